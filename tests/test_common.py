"""Behaviour every initializer shares: meta and empty tensors, dtypes, generators, no_grad,
the catalog and name lookup. Parametrized over the whole catalog, so a new initializer that is
registered but not listed here fails test_every_catalog_entry_is_covered."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import weightinit as wi

# initializer -> extra arguments, and whether it draws random numbers
INITIALIZERS = {
    wi.zeros_: ({}, False),
    wi.ones_: ({}, False),
    wi.constant_: ({"val": 0.5}, False),
    wi.block_constant_: ({"values": [0.5]}, False),
    wi.uniform_: ({}, True),
    wi.normal_: ({}, True),
    wi.trunc_normal_: ({}, True),
    wi.variance_scaling_: ({}, True),
    wi.packed_variance_scaling_: ({"scales": [0.5]}, True),  # one projection: fits any shape
    wi.lecun_normal_: ({}, True),
    wi.lecun_uniform_: ({}, True),
    wi.glorot_normal_: ({}, True),
    wi.glorot_uniform_: ({}, True),
    wi.he_normal_: ({}, True),
    wi.he_uniform_: ({}, True),
    wi.random_walk_: ({}, True),
    wi.orthogonal_: ({}, True),
    wi.delta_orthogonal_: ({}, True),
    wi.identity_: ({}, False),
    wi.sparse_: ({"k": 2}, True),
    wi.looks_linear_: ({}, True),
    wi.unitary_: ({}, True),
    wi.zer0_: ({}, False),
}
SHAPE = (6, 4, 3)  # fits every initializer: an even in axis and a kernel axis
RANDOM = [f for f, (_, random) in INITIALIZERS.items() if random]
NEEDS_FANS = [
    f
    for f in INITIALIZERS
    if f
    not in (
        wi.zeros_,
        wi.ones_,
        wi.constant_,
        wi.block_constant_,
        wi.uniform_,
        wi.normal_,
        wi.trunc_normal_,
    )
]


def call(f, tensor, **extra):
    kwargs, _ = INITIALIZERS[f]
    return f(tensor, **kwargs, **extra)


def ids(f):
    return f.__name__


def test_every_catalog_entry_is_covered():
    assert {e.function for e in wi.catalog()} == set(INITIALIZERS)


@pytest.mark.parametrize("f", INITIALIZERS, ids=ids)
def test_returns_the_same_tensor_filled_in_place(f):
    t = torch.full(SHAPE, float("nan"))
    assert call(f, t) is t
    assert torch.isfinite(t).all()


@pytest.mark.parametrize("f", INITIALIZERS, ids=ids)
def test_meta_tensors_are_a_no_op(f):
    t = torch.empty(SHAPE, device="meta")
    assert call(f, t) is t


@pytest.mark.parametrize("f", INITIALIZERS, ids=ids)
@pytest.mark.parametrize("shape", [(0, 4, 3), (6, 0, 3), (6, 4, 0)])
def test_zero_size_tensors_are_a_no_op(f, shape):
    t = torch.empty(shape)
    assert call(f, t) is t


@pytest.mark.parametrize("f", INITIALIZERS, ids=ids)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.bool])
def test_integer_and_bool_tensors_raise_type_error(f, dtype):
    t = torch.zeros(SHAPE, dtype=dtype)
    with pytest.raises(TypeError, match=f"{f.__name__}: `tensor` has dtype {dtype}"):
        call(f, t)
    assert not t.any()


@pytest.mark.parametrize("f", NEEDS_FANS, ids=ids)
def test_one_dimensional_tensor_asks_for_a_layout(f):
    t = torch.zeros(6)
    with pytest.raises(ValueError, match="pass layout="):
        call(f, t)
    assert not t.any()


@pytest.mark.parametrize("f", RANDOM, ids=ids)
def test_random_initializers_draw_only_from_the_generator(f):
    """Same seed, same values; a different seed, different values; the global RNG untouched."""
    state = torch.random.get_rng_state()
    a = call(f, torch.empty(SHAPE), generator=torch.Generator().manual_seed(0))
    b = call(f, torch.empty(SHAPE), generator=torch.Generator().manual_seed(0))
    c = call(f, torch.empty(SHAPE), generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("f", INITIALIZERS, ids=ids)
def test_parameters_that_require_grad_are_filled_without_autograd_history(f):
    p = torch.nn.Parameter(torch.empty(SHAPE))
    out = call(f, p)
    assert out is p and p.grad_fn is None and p.requires_grad


@pytest.mark.parametrize("f", INITIALIZERS, ids=ids)
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_every_float_dtype(f, dtype):
    t = torch.full(SHAPE, float("nan"), dtype=dtype)
    assert call(f, t).dtype == dtype
    assert torch.isfinite(t).all()


@given(
    shape=st.lists(st.integers(1, 6), min_size=3, max_size=4).map(
        lambda s: [s[0], 2 * s[1], *s[2:]]
    ),
    f=st.sampled_from(list(INITIALIZERS)),
)
def test_any_shape(shape, f):
    t = torch.full(shape, float("nan"))
    kwargs = {"k": 1} if f is wi.sparse_ else {}
    extra = {} if f is wi.sparse_ else INITIALIZERS[f][0]
    f(t, **extra, **kwargs)
    assert torch.isfinite(t).all()


# --- catalog and lookup -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, function",
    [
        ("he_normal", wi.he_normal_),
        ("HeNormal", wi.he_normal_),
        ("kaiming_normal_", wi.he_normal_),
        ("KAIMING_NORMAL", wi.he_normal_),
        ("xavier_uniform", wi.glorot_uniform_),
        ("GlorotUniform", wi.glorot_uniform_),
        ("TruncatedNormal", wi.trunc_normal_),
        ("trunc_normal_", wi.trunc_normal_),
        ("RandomNormal", wi.normal_),
        ("VarianceScaling", wi.variance_scaling_),
        ("Orthogonal", wi.orthogonal_),
        ("eye", wi.identity_),
        ("Zeros", wi.zeros_),
        ("LecunUniform", wi.lecun_uniform_),
    ],
)
def test_get_knows_keras_and_torch_names_in_any_case(name, function):
    assert wi.get(name) is function


def test_dirac_is_not_an_alias_because_torchs_dirac_takes_groups_positionally():
    with pytest.raises(ValueError, match="unknown initializer 'dirac'"):
        wi.get("dirac")


@pytest.mark.parametrize("f", INITIALIZERS, ids=ids)
def test_one_signature_for_all(f):
    """Every initializer takes layout= and generator=, so a plan can call any of them alike."""
    t = torch.full(SHAPE, float("nan"))
    call(f, t, layout=wi.Layout(), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(t).all()


@pytest.mark.parametrize(
    "f", [wi.zeros_, wi.ones_, wi.constant_, wi.uniform_, wi.normal_, wi.trunc_normal_], ids=ids
)
def test_fills_check_a_given_layout_against_the_tensor(f):
    t = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match="out of range"):
        call(f, t, layout=wi.Layout(in_axes=(5,)))
    assert not t.any()


def test_get_passes_callables_through():
    assert wi.get(wi.sparse_) is wi.sparse_


def test_get_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown initializer 'he_norml'.*'he_normal'"):
        wi.get("he_norml")


def test_get_wrong_type():
    with pytest.raises(TypeError, match="`name` must be"):
        wi.get(3)


def test_catalog_entries_are_complete():
    for entry in wi.catalog():
        assert entry.formula and entry.activations and entry.paper
        assert entry.function.__doc__ and "Example" in entry.function.__doc__

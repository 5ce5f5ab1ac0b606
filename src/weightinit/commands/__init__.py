"""The command line (``weightinit list|schemes|plan|diagnose|demo``) and the demo."""

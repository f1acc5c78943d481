"""An env module whose import fails: ``--env raising_env:Any-v0``."""

raise RuntimeError("this module refuses to be imported")

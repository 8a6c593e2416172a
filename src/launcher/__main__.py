# Entry point of the `launcher` console script and of `python -m launcher`.
# `launcher run` first tries the warm fast path (stdlib only); everything
# else goes through click.
import sys

# What the user's interpreter settings would change in the launcher's own
# interpreter (-I ignores them all): for the command, not for us.  Settings
# that change nothing we do (PYTHONUNBUFFERED, PYTHONDONTWRITEBYTECODE, ...)
# are not worth a second interpreter start.
LEAKS = ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONWARNINGS", "PYTHONOPTIMIZE",
         "PYTHONINSPECT", "PYTHONDEVMODE", "PYTHONVERBOSE", "PYTHONDEBUG", "PYTHONSTARTUP",
         "PYTHONPLATLIBDIR", "PYTHONSAFEPATH", "PYTHONMALLOC", "PYTHONPYCACHEPREFIX")


def isolate() -> None:
    """Re-exec this interpreter with -I when the user's settings reached it.

    The `launcher` script starts its python with -I itself; this covers
    `python -m launcher` and a python without -I.  What it cannot undo: a
    user sitecustomize or .pth that already ran in this interpreter.  Only
    when the launcher imports without them (not from PYTHONPATH, the user
    site or the current directory): else -I would lose it.
    """
    if sys.flags.isolated or not hasattr(sys, "orig_argv"):
        return  # (before importing os: under the script's -S nothing has yet)
    import os
    import site

    user_site = site.ENABLE_USER_SITE and site.USER_SITE in sys.path
    if not user_site and not any(os.environ.get(k) for k in LEAKS):
        return
    home = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    theirs = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    theirs += [os.getcwd(), site.USER_SITE or ""]
    if any(os.path.abspath(p) == home for p in theirs) or not sys.executable:
        return
    try:
        os.execv(sys.executable, [sys.executable, "-I", *sys.orig_argv[1:]])
    except OSError:
        pass  # run as we are


def main(fast_tried: bool = False) -> None:
    """`fast_tried`: the `launcher` script already tried the warm path."""
    isolate()
    args = sys.argv[1:]
    if args[:1] == ["run"] and not fast_tried:
        import _launcher_warm

        _launcher_warm.try_fast(args)
    if sys.flags.no_site:  # the `launcher` script skips site for the warm path's sake
        import site

        site.main()
    from launcher.execute import guard_stdio

    guard_stdio()
    from launcher.cli import main as cli_main

    cli_main(args)


if __name__ == "__main__":
    main()

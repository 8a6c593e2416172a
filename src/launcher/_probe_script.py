# Standalone probe, run inside a target interpreter as
#   <python> -I -S _probe_script.py <gate sitecustomize.py> [compile-gate]
# It prints one JSON object on stdout describing the interpreter's identity.
# Stdlib only, CPython 3.8+ and PyPy; -I -S keep it fast and keep any user
# start-up code out of the answer.
import json
import os
import struct
import sys
import sysconfig


def _load_gate(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("_launcher_gate_probe", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _elf_interpreter(path):
    """The ELF PT_INTERP of the binary: tells musl from glibc for certain."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF":
                return None
            is64 = head[4] == 2
            end = "<" if head[5] == 1 else ">"
            if is64:
                phoff, = struct.unpack(end + "Q", head[32:40])
                phentsize, phnum = struct.unpack(end + "HH", head[54:58])
            else:
                phoff, = struct.unpack(end + "I", head[28:32])
                phentsize, phnum = struct.unpack(end + "HH", head[42:46])
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                ph = f.read(phentsize)
                if struct.unpack(end + "I", ph[:4])[0] == 3:  # PT_INTERP
                    if is64:
                        off, = struct.unpack(end + "Q", ph[8:16])
                        size, = struct.unpack(end + "Q", ph[32:40])
                    else:
                        off, = struct.unpack(end + "I", ph[4:8])
                        size, = struct.unpack(end + "I", ph[16:20])
                    f.seek(off)
                    return f.read(size).rstrip(b"\0").decode("utf-8", "replace")
    except (OSError, struct.error):
        return None
    return None


def _venv():
    """(prefix, include-system-site-packages) when this python is a venv's.

    Under -S, site.venv() never runs, so sys.prefix is still the base
    interpreter's: find pyvenv.cfg the way site.venv() does instead.
    """
    exe_dir = os.path.dirname(os.path.abspath(sys.executable or ""))
    for conf in (os.path.join(exe_dir, "pyvenv.cfg"), os.path.join(os.path.dirname(exe_dir), "pyvenv.cfg")):
        if not os.path.isfile(conf):
            continue
        system = True
        try:
            with open(conf, encoding="utf-8") as f:
                for line in f:
                    key, sep, value = line.partition("=")
                    if sep and key.strip().lower() == "include-system-site-packages":
                        system = value.strip().lower() == "true"
        except OSError:
            pass
        return os.path.dirname(exe_dir), system
    return None


def main():
    gate = _load_gate(sys.argv[1])
    import _imp
    import site

    venv = _venv()
    prefixes = None
    if venv is not None:
        prefixes = [venv[0]] + ([sys.base_prefix, sys.base_exec_prefix] if venv[1] else [])
    try:
        from importlib.machinery import PathFinder

        site_packages = list(site.getsitepackages(prefixes))
    except Exception:
        site_packages = []
    try:
        user_site = site.getusersitepackages()
    except Exception:
        user_site = None
    if venv is not None and not venv[1]:
        user_site = None  # site disables the user site in a venv without system packages
    # Where the interpreter would find a sitecustomize of its own (stdlib
    # dirs and site-packages; PYTHONPATH is ignored under -I on purpose).
    spec = PathFinder.find_spec("sitecustomize", [p for p in sys.path if p] + site_packages)
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError, AttributeError):
        libc = None
    exe = sys.executable
    interp = _elf_interpreter(os.path.realpath(exe)) if exe else None
    info = {
        "executable": exe,
        "realpath": os.path.realpath(exe) if exe else None,
        "implementation": sys.implementation.name,
        "version": "%d.%d.%d" % sys.version_info[:3],
        "version_info": list(sys.version_info[:2]),
        "abi_key": gate.abi_key(),
        "cache_tag": sys.implementation.cache_tag,
        "ext_suffixes": list(_imp.extension_suffixes()),
        "abiflags": getattr(sys, "abiflags", ""),
        "gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "py_debug": bool(sysconfig.get_config_var("Py_DEBUG")),
        "machine": os.uname().machine,
        "pointer_bits": struct.calcsize("P") * 8,
        "libc": libc,
        "elf_interpreter": interp,
        "musl": bool(interp and "musl" in interp),
        "prefix": venv[0] if venv is not None else sys.prefix,
        "base_prefix": getattr(sys, "base_prefix", sys.prefix),
        "is_venv": venv is not None or sys.prefix != getattr(sys, "base_prefix", sys.prefix),
        "stdlib": sysconfig.get_paths().get("stdlib"),
        "site_packages": site_packages,
        "user_site": user_site,
        "sitecustomize": spec.origin if spec is not None else None,
    }
    if len(sys.argv) > 2 and sys.argv[2] == "compile-gate":
        info["compile_error"] = _compile_gate(os.path.dirname(sys.argv[1]))
    sys.stdout.write(json.dumps(info))


def _compile_gate(directory):
    """Write the bytecode of the gate and its parts for this interpreter, at
    every optimisation level (-O, -OO, PYTHONOPTIMIZE), 0644 whatever the
    umask: interpreters then find theirs and never write into the gate's
    directory themselves.  Returns the first error, or None."""
    import importlib.util
    import py_compile

    error = None
    for name in ("sitecustomize.py", "_launcher_preloads.py", "_launcher_miss.py"):
        src = os.path.join(directory, name)
        for level in (0, 1, 2):
            cfile = importlib.util.cache_from_source(src, optimization=level or "")
            try:
                py_compile.compile(src, cfile=cfile, doraise=True, optimize=level)
                os.chmod(cfile, 0o644)
            except Exception as exc:
                error = error or str(exc)
    return error


if __name__ == "__main__":
    main()

"""The package's imports: no import cycle between xcit_dense's modules (read from their source,
imports inside functions included), and every ``xcit_dense.engine`` module importable on its
own, as the first of the package's modules, in a process of its own."""
import ast
import os
import subprocess
import sys
from typing import Dict, List, Optional, Set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'xcit_dense'


def package_modules() -> Dict[str, str]:
    """{dotted module name: file} of every module under xcit_dense/ (a package is its
    ``__init__.py``)."""
    modules = {}
    for folder, dirs, files in os.walk(os.path.join(ROOT, PACKAGE)):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, ROOT)[:-len('.py')].split(os.sep)
                if parts[-1] == '__init__':
                    parts.pop()
                modules['.'.join(parts)] = path
    return modules


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute name of what a ``from ... import`` statement imports from."""
    if not node.level:
        return node.module
    base = module.split('.') if is_package else module.split('.')[:-1]
    base = base[:len(base) - (node.level - 1)]
    return '.'.join(base + ([node.module] if node.module else []))


def imported_modules(module: str, path: str, known: Set[str]) -> Set[str]:
    """The package's modules that ``module`` imports anywhere in its source (at the top, in
    functions, under conditions): ``from X import name`` counts as an import of ``X.name``
    where that is a module, of ``X`` otherwise. The parent packages that Python imports first
    are not counted: by then they are being imported already."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    is_package = os.path.basename(path) == '__init__.py'
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            for alias in node.names:
                sub = f'{base}.{alias.name}'
                found.add(sub if sub in known else base)
    return {name for name in found if name in known and name != module}


def import_graph() -> Dict[str, Set[str]]:
    modules = package_modules()
    return {m: imported_modules(m, path, set(modules)) for m, path in modules.items()}


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import cycle of ``graph`` (its modules in order, the first repeated at the end), or
    None: a depth-first search that meets a module on its own path."""
    done: Set[str] = set()
    path: List[str] = []

    def visit(module: str) -> Optional[List[str]]:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            cycle = visit(imported)
            if cycle:
                return cycle
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}) is None
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b', 'c'}, 'b': set(), 'c': {'d'}, 'd': {'c'}}) == ['c', 'd', 'c']


def test_the_import_reader_resolves_relative_and_function_level_imports(tmp_path):
    known = {'pkg', 'pkg.sub', 'pkg.sub.a', 'pkg.sub.b', 'pkg.c'}
    source = tmp_path / 'a.py'
    source.write_text('import os\nfrom . import b\nfrom .. import c\n'
                      'def f():\n    from ..sub import b as bb\n    import pkg.c\n'
                      '    from pkg.sub.b import name\n')
    assert imported_modules('pkg.sub.a', str(source), known) == {'pkg.sub.b', 'pkg.c'}
    init = tmp_path / '__init__.py'
    init.write_text('from .a import thing\nfrom .b import other\n')
    assert imported_modules('pkg.sub', str(init), known) == {'pkg.sub.a', 'pkg.sub.b'}


def test_no_import_cycle():
    graph = import_graph()
    assert 'xcit_dense.engine.errors' in graph and 'xcit_dense.engine.launch' in graph
    cycle = find_cycle(graph)
    assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_the_engine_errors_module_is_the_bottom():
    engine = {m for m in import_graph()['xcit_dense.engine.errors']
              if m.startswith('xcit_dense.engine')}
    assert engine == set()


# Run in a fresh interpreter: imports ``xcit_dense.engine.<name>`` for each name given, each in
# a process of its own (forked before any of xcit_dense is imported; the third-party
# libraries that every engine module needs are imported once before, which is what keeps this
# fast). The packages ``xcit_dense`` and ``xcit_dense.engine`` are present but their
# __init__.py files are not run: importing a module in the ordinary way runs them first, and
# they import every engine module in their own order, so the module would never be the first
# of the engine imported. Prints the names that failed, with their error's last line.
_IMPORT_EACH_ALONE = '''
import importlib, os, sys, traceback, types
import mmengine.model, mmengine.runner, torch  # noqa: F401
assert not any(m.split('.')[0] == 'xcit_dense' for m in sys.modules)
root, failed = sys.argv[1], []
for module in sys.argv[2:]:
    pid = os.fork()
    if pid == 0:
        try:
            for name in ('xcit_dense', 'xcit_dense.engine'):
                package = types.ModuleType(name)
                package.__path__ = [os.path.join(root, *name.split('.'))]
                sys.modules[name] = package
            importlib.import_module('xcit_dense.engine.' + module)
        except BaseException:
            print(module, traceback.format_exc().strip().splitlines()[-1], flush=True)
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1]:
        failed.append(module)
sys.exit(1 if failed else 0)
'''


def test_each_engine_module_imports_alone_in_a_fresh_process():
    names = sorted(m.rsplit('.', 1)[1] for m in package_modules()
                   if m.startswith('xcit_dense.engine.'))
    assert {'errors', 'config', 'launch', 'resume', 'tta', 'build'} <= set(names)
    proc = subprocess.run([sys.executable, '-c', _IMPORT_EACH_ALONE, ROOT, *names], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]


def test_the_engine_imports_the_ordinary_way_in_a_fresh_interpreter():
    """``import xcit_dense.engine.errors``: the package's and the engine's __init__.py run
    first (registering the modules), then the module."""
    proc = subprocess.run([sys.executable, '-c', 'import xcit_dense.engine.errors'], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

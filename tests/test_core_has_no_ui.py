import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_importing_all_of_core_does_not_import_streamlit():
    modules = sorted(p.stem for p in (ROOT / "core").glob("*.py") if p.stem != "__main__")
    code = ("import sys\n" + "".join(f"import core.{m}\n" for m in modules) +
            "bad = [m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.')]\n"
            "print(len(sys.modules)); assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert len(modules) >= 8

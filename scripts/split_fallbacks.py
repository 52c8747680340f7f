"""Authoring helper: move code that follows `### END HIDDEN TESTS` in a graded cell into its own cell.

Why: in grading, hidden tests run; when they fail, anything after them in the same cell (the fallback
`use_or_reference(...)`) never runs and later cells break. A separate cell always runs.
Usage: python scripts/split_fallbacks.py solutions/01_weight_pruning.ipynb [...]
"""
import json
import sys

END = "### END HIDDEN TESTS"

for path in sys.argv[1:]:
    nb = json.load(open(path, encoding="utf-8"))
    cells, moved = [], 0
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code" and cell["metadata"].get("nbgrader", {}).get("grade") and END in source:
            head, _, tail = source.partition(END)
            tail = tail.lstrip("\n")
            if tail.strip():
                cell["source"] = head + END + "\n"
                cells.append(cell)
                new = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": tail}
                if "id" in cell:
                    new["id"] = f"{cell['id']}-fallback"[:64]
                cells.append(new)
                moved += 1
                continue
        cells.append(cell)
    nb["cells"] = cells
    with open(path, "w", encoding="utf-8") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False, sort_keys=True)
        f.write("\n")
    print(f"{path}: moved {moved} fallback(s) into their own cells")

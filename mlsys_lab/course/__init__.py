"""Course tooling: student copies of the labs (:mod:`.student`) and the labs' checks (:mod:`.checks`).

``python -m mlsys_lab student SRC... --out DIR`` is the command-line entry (see ``mlsys_lab.__main__``).
The student-copy functions are imported lazily, so ``import mlsys_lab.course.checks`` needs NumPy only
and not nbformat.
"""

__all__ = [
    "StudentCopyError",
    "make_student_notebook",
    "strip_solutions",
    "write_student_copies",
]


def __getattr__(name):
    if name in __all__:
        from . import student

        return getattr(student, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

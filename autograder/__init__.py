"""The grader students receive, whole: policy, assignments, submission reading, the sandboxed worker,
the judge and ``course grade``. Instructor tools live in ``instructor/``."""

"""Instructor tools: the nbgrader release, the student template, session reports, the notebook
executor and the reference solutions. Not shipped to students; the grader (``autograder/``) never
imports this package."""

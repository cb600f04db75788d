"""The front door: ``course`` / ``python -m course`` dispatches to the library (``course_utils``), the
grader (``autograder``) and the instructor tools (``instructor``), importing each only when used."""

"""nbgrader configuration of the course (headless CLI use, no JupyterHub needed).

solutions/<assignment>/      source notebooks with ### BEGIN SOLUTION markers and hidden tests
build/release/<assignment>/  what ``nbgrader generate_assignment`` writes (and deletes with --force): a
                             build folder, so the nbgrader cycle never touches committed files
sessions/<assignment>/       the student notebooks in the repository: ``make release`` copies them there
                             (notebooks only; the session READMEs and figures beside them stay)
"""
c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.course_id = "mnist-99.4-under-10k"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "build/release"   # instructor.release.RELEASE_DIRECTORY
c.CourseDirectory.assignment_id = ""

# Stubs the student sees in place of each solution region: they raise with a pointer to the task.
c.ClearSolutions.code_stub = {
    "python": "# YOUR CODE HERE\nraise NotImplementedError(\"Not implemented yet: write your code here (see the task above this cell)\")"
}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Training cells take minutes on a CPU; graded runs load the submitted run record instead
# (the notebooks check NBGRADER_EXECUTION), so this bounds set-up cells, not training. (nbgrader's
# Execute always carries on past a failing cell: allow_errors is not an option it takes.)
c.Execute.timeout = 600

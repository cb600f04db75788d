"""Instructor side of the course: grading policy, checks and the reference solutions they judge against.

Not shipped to students (see ``make student-release``)."""

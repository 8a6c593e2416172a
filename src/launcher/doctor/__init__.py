"""`launcher doctor`: what is wrong with a launch, why, and the command that fixes it.

`runner.diagnose()` runs the checks (one concern per module under
`checks/`) and returns a `models.Report`; `render` prints it for people,
`Report.model_dump_json()` for tools.
"""

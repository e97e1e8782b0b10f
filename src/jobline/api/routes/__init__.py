"""The API's routes, one module per group: tasks (remote workers), jobs, functions, ops."""

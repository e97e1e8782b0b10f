"""A test App for the recovery tests and bench/recovery.py: a no-op function, and a schedule
that makes a job every second (so a scheduler is always about to use the database)."""

from jobline import App

app = App()


@app.function("noop")
def noop(payload):
    return None


app.schedule("every-second", "1 seconds", "noop")

"""A test App for the restart test: each job appends its id to the `seen` table."""

from jobline import App

app = App()


@app.function("record")
async def record(payload, ctx):
    async with await ctx.connect_async() as conn:
        await conn.execute("INSERT INTO seen (job_id) VALUES (%s)", [ctx.job_id])

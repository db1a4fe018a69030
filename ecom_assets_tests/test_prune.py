"""`make prune`: old runs leave the Dagster home with their event logs and captured logs."""

from datetime import timedelta
from pathlib import Path

from dagster import DagsterInstance, Definitions, asset, define_asset_job

from ecom_assets.instance import write_instance_settings
from ecom_assets.prune import prune_runs


@asset
def something() -> None:
    print("a run's captured output")


def test_prune_deletes_old_runs_with_their_logs_and_keeps_new_ones(tmp_path: Path) -> None:
    job = Definitions(
        assets=[something], jobs=[define_asset_job("job", [something])]
    ).resolve_job_def("job")
    write_instance_settings(tmp_path)  # the project's Dagster home
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        old = [job.execute_in_process(instance=instance).run_id for _ in range(3)]
        storage = tmp_path / "storage"
        assert all((storage / run_id).exists() for run_id in old)

        with DagsterInstance.from_config(str(tmp_path)) as webserver:
            webserver.all_logs(old[-1])  # someone looks at an old run in the UI
            assert prune_runs(instance, older_than=timedelta(0)) == 3
        recent = job.execute_in_process(instance=instance).run_id
        assert prune_runs(instance, older_than=timedelta(hours=1)) == 0

        assert [r.dagster_run.run_id for r in instance.get_run_records()] == [recent]
    assert not any((storage / run_id).exists() for run_id in old)
    files = [p.name for p in (tmp_path / "history" / "runs").iterdir()]
    assert not [name for name in files if name.startswith(tuple(old))]  # nor their logs' -wal
    assert f"{recent}.db" in files

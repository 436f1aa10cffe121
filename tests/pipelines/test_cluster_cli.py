"""`cocos pipeline submit` and `schedule` drive kfp.Client as a cluster would see it: the compiled
package, the parameters, an experiment, and for schedules a recurring run on the uploaded pipeline
version with a 6-field cron. The client is a stand-in recording the calls (no cluster here).
Run: pytest tests/pipelines/test_cluster_cli.py -q
"""

from types import SimpleNamespace

import pytest

from pipelines import cli


class FakeClient:
    def __init__(self, host=None, namespace=None):
        self.host, self.namespace, self.calls = host, namespace, []
        FakeClient.last = self

    def create_run_from_pipeline_package(self, package, arguments, experiment_name, enable_caching):
        self.calls.append(("run", package, arguments, experiment_name))
        return SimpleNamespace(run_id="run-1")

    def upload_pipeline(self, package, pipeline_name):
        self.calls.append(("upload", package, pipeline_name))
        return SimpleNamespace(pipeline_id="p-1")

    def list_pipeline_versions(self, pipeline_id):
        return SimpleNamespace(pipeline_versions=[SimpleNamespace(pipeline_version_id="v-1")])

    def create_experiment(self, name, namespace=None):
        return SimpleNamespace(experiment_id="e-1")

    def create_recurring_run(self, **kwargs):
        self.calls.append(("recurring", kwargs))
        return SimpleNamespace(recurring_run_id="r-1")


@pytest.fixture(autouse=True)
def fake_kfp(monkeypatch):
    import kfp

    monkeypatch.setattr(kfp, "Client", FakeClient)


def test_submit_uses_the_committed_package_and_parameters():
    assert cli.submit("http://kfp", {"rloo_steps": 10}, "cocos", namespace="team-a") == "run-1"
    client = FakeClient.last
    assert (client.host, client.namespace) == ("http://kfp", "team-a")
    kind, package, arguments, experiment = client.calls[0]
    assert package == str(cli.COMPILED) and arguments == {"rloo_steps": 10} and experiment == "cocos"


def test_schedule_creates_a_recurring_run_on_the_uploaded_version():
    assert cli.schedule("http://kfp", "0 3 * * 0", {"rloo_steps": 10}, "cocos") == "r-1"
    recurring = FakeClient.last.calls[-1][1]
    assert recurring["cron_expression"] == "0 0 3 * * 0"  # kfp's cron has seconds first
    assert recurring["pipeline_id"] == "p-1" and recurring["version_id"] == "v-1"
    assert recurring["params"] == {"rloo_steps": 10} and recurring["max_concurrency"] == 1


def test_bad_cron_and_parameters_are_named():
    with pytest.raises(ValueError, match="cron='daily'"):
        cli.schedule("http://kfp", "daily", {}, "cocos")
    with pytest.raises(ValueError, match="name=value"):
        cli.parse_parameters(["rloo_steps"])
    assert cli.parse_parameters(["rloo_steps=3", "data_eval_sources=humaneval,mbpp"]) == {
        "rloo_steps": 3,
        "data_eval_sources": "humaneval,mbpp",
    }

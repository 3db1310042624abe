"""The command line's user errors: each is one line on stderr and exit status 2, never a traceback; and
``skinnerbox agent`` hands its options to the agent process."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from shaping import cli

SERVER_TOML = '[task]\nname = "PerceptualDiscrimination"\nN_batch = 8\n[curricula.c]\nkind = "fixed"\n'


def run(capsys, argv: list[str]) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


def one_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith(f"skinnerbox {command}:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def server_file(tmp_path: Path, text: str = SERVER_TOML) -> str:
    path = tmp_path / "server.toml"
    path.write_text(text)
    return str(path)


def test_a_server_on_a_taken_port_is_a_user_error(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = run(capsys, ["server", server_file(tmp_path), "--bind", f"tcp://127.0.0.1:{port}",
                                 "--journal", str(tmp_path / "journal")])
    assert code == 2 and "in use by another process" in one_line(err, "server")


@pytest.mark.parametrize("text, says", [
    (SERVER_TOML.replace('kind = "fixed"', 'kind = "stages"\nstages = [{name = "x", knobs = {nope = 1.0}}]'),
     "curricula.c: stages[0].knobs.nope"),
    (SERVER_TOML.replace("PerceptualDiscrimination", "NoSuchTask"), "unknown task 'NoSuchTask'"),
    (SERVER_TOML.replace("N_batch = 8", "N_batch = 100000000"), "would exceed the protocol limits"),
], ids=["bad-curriculum", "unknown-task", "batch-too-big"])
def test_a_bad_server_config_file_is_a_user_error(tmp_path, capsys, text, says):
    code, err = run(capsys, ["server", server_file(tmp_path, text), "--journal", str(tmp_path / "journal")])
    assert code == 2 and says in one_line(err, "server")


@pytest.mark.parametrize("command", ["report", "sync"])
@pytest.mark.parametrize("where", ["missing", "empty"])
def test_report_and_sync_refuse_a_folder_that_is_not_a_lab(tmp_path, capsys, command, where):
    lab = tmp_path / "not_a_lab"
    if where == "empty":
        lab.mkdir()
    argv = [command, str(lab)] + (["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"] if command == "sync"
                                  else ["--no-mlflow"])
    code, err = run(capsys, argv)
    assert code == 2 and "no journal at" in one_line(err, command)
    assert not (lab / "report.html").exists() and not (tmp_path / "mlflow.db").exists()


def test_sync_names_a_corrupt_lab_json(tmp_path, capsys):
    from shaping import journal

    with journal.Journal(tmp_path / "lab" / "journal", fsync="never") as j:
        j.write(journal.OPEN, {"time": 0.0, "pid": 1, "seed": 0, "config": {}})
    (tmp_path / "lab" / "lab.json").write_text("{not json")
    code, err = run(capsys, ["sync", str(tmp_path / "lab"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    assert code == 2 and "lab.json is not valid JSON" in one_line(err, "sync")


def test_a_dashboard_of_a_missing_folder_is_a_user_error(tmp_path, capsys):
    code, err = run(capsys, ["dashboard", str(tmp_path / "nope"), "--port", "1"])
    assert code == 2 and "no lab directory" in one_line(err, "dashboard")


def test_skinnerbox_agent_passes_its_options_to_the_agent_process(tmp_path, caplog):
    """``skinnerbox agent --server ...`` reaches agents.agent.main (argparse alone rejected ``--server``); a
    config it cannot read is refused (exit 2, no restart) with one logged line."""
    missing = tmp_path / "missing.toml"
    with caplog.at_level("ERROR", logger="agents.agent"):
        code = cli.main(["--log-level", "ERROR", "agent", "--server", "tcp://127.0.0.1:1", "--name", "a",
                         "--config", str(missing)])
    assert code == 2
    assert [r.getMessage() for r in caplog.records if r.name == "agents.agent"] == \
        [f"config file {missing} does not exist"]


def test_an_agent_named_like_the_command_is_still_an_argument():
    head, rest = cli._split_agent_args(["override", "labs/x", "agent", "--stage", "1"])
    assert rest is None and head == ["override", "labs/x", "agent", "--stage", "1"]
    assert cli._split_agent_args(["--log-level", "DEBUG", "agent", "--name", "a"]) == \
        (["--log-level", "DEBUG", "agent"], ["--name", "a"])

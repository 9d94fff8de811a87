"""``RunConfig`` from the parsed command line, and ``--config-file`` reloading config.toml."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import pytest

from bida_app.cli.main import main
from bida_app.cli.runconfig import config_from_argv
from bida_app.config import RunConfig
from bida_app.errors import ExitCode

POSITIONALS = ["bids", "out", "participant"]
#: A value other than the default for every option of the participant level.
EVERY_OPTION = [
    *["--participant_label", "01", "02", "--session_label", "a"],
    *["--method", "bida", "--target_resolution", "0.2", "--steps", "7", "--eta", "0.3"],
    *["--n_samples", "3", "--null_shrinkage", "--slice_profile", "slr"],
    *["--dc_damping", "0.25"],
    *["--weights", "my_weights", "--prior", "self", "--self_prior_steps", "5", "--seed", "3"],
    *["--anisotropy_threshold", "2", "--header_scale", "0.1", "--no_n4", "-w", "scratch"],
    *["--device", "cpu", "--nprocs", "2", "--omp_nthreads", "3", "--mem_gb", "4.5"],
    *["--plugin", "Linear", "--plugin_args", '{"a": 1}', "--write_graph"],
    *["--stop_on_first_crash", "--overwrite", "--reports_only", "--skip_bids_validator", "-v"],
]


def test_every_option_reaches_its_field():
    cfg = config_from_argv(POSITIONALS + EVERY_OPTION)
    unchanged = [
        f.name
        for f in fields(RunConfig)
        if getattr(cfg, f.name) == RunConfig.default(f.name) and f.name != "version"
    ]
    assert unchanged == [], f"fields the option list leaves at their default: {unchanged}"
    assert cfg.weights == "my_weights" and cfg.work_dir == "scratch"  # paths become strings
    assert cfg.participant_label == ["01", "02"] and cfg.target_resolution == 0.2


def test_unset_options_take_the_dataclass_defaults():
    cfg = config_from_argv(POSITIONALS + ["--nprocs", "1"])
    expected = RunConfig("bids", "out", "participant", omp_nthreads=1)
    assert cfg == expected


def test_auto_damping_round_trips(tmp_path: Path):
    cfg = config_from_argv([*POSITIONALS, "--dc_damping", "auto"])
    assert cfg.dc_damping == "auto"
    path = cfg.to_toml(tmp_path / "config.toml")
    assert RunConfig.from_toml(path).dc_damping == "auto"


@pytest.mark.parametrize("options", [[], EVERY_OPTION], ids=["defaults", "every-option"])
def test_config_file_round_trip(tmp_path: Path, options: list[str]):
    cfg = config_from_argv(POSITIONALS + options)
    path = cfg.to_toml(tmp_path / "config.toml")
    assert config_from_argv(POSITIONALS + ["--config-file", str(path)]) == cfg
    assert RunConfig.from_toml(path) == cfg


def test_command_line_wins_over_the_file(tmp_path: Path):
    path = config_from_argv(POSITIONALS + EVERY_OPTION).to_toml(tmp_path / "config.toml")
    argv = ["b2", "o2", "group", "--config_file", str(path), "--steps", "9"]
    cfg = config_from_argv([*argv, "--participant_label", "07", "--method", "cubic"])
    assert (cfg.bids_dir, cfg.output_dir, cfg.analysis_level) == ("b2", "o2", "group")
    assert (cfg.steps, cfg.participant_label, cfg.method) == (9, ["07"], "cubic")
    assert (cfg.eta, cfg.n_samples, cfg.omp_nthreads, cfg.n4) == (0.3, 3, 3, False)  # file


def test_unknown_keys_are_ignored_and_version_is_this_one(tmp_path: Path, caplog):
    path = tmp_path / "config.toml"
    path.write_text('[bida]\nsteps = 5\nversion = "0.0.1"\nremoved_option = 1\n')
    with caplog.at_level("WARNING", logger="bida"):
        cfg = config_from_argv(POSITIONALS + ["--config-file", str(path)])
    assert cfg.steps == 5 and cfg.version == RunConfig.default("version") != "0.0.1"
    assert "unknown option(s) removed_option ignored" in caplog.text


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (None, "not found"),
        ("[bida\nsteps = 3\n", "not a TOML file"),
        ("[other]\nsteps = 3\n", "no [bida] table"),
        ('[bida]\nsteps = "many"\n', "steps = 'many' is not an integer"),
        ("[bida]\nnull_shrinkage = 1\n", "is not true or false"),
        ("[bida]\nparticipant_label = [1]\n", "not a list of strings"),
        ('[bida]\nmethod = "magic"\n', "method = 'magic' is not one of"),
        ("[bida]\nsteps = -2\n", "must be >= 1"),
        ('[bida]\ndevice = "gpu"\n', "expected auto, cpu, cuda or cuda:N"),
        ("[bida]\ndc_damping = -1\n", "must be >= 0"),
        ('[bida]\ndc_damping = "often"\n', "dc_damping"),
        ("[bida]\ndc_damping = true\n", 'is not a number or "auto"'),
    ],
    ids=["missing", "not-toml", "no-table", "str-for-int", "int-for-bool", "list-type",
         "bad-choice", "bad-value", "bad-device", "negative-damping", "bad-damping",
         "bool-damping"],
)  # fmt: skip
def test_bad_config_file_is_one_usage_line(tmp_path, capsys, text, needle):
    path = tmp_path / "config.toml"
    if text is not None:
        path.write_text(text)
    code = main([str(tmp_path / "bids"), str(tmp_path / "out"), "participant",
                 "--config-file", str(path)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == int(ExitCode.USAGE)
    assert len(err) == 1 and str(path) in err[0] and needle in err[0], err
    assert not (tmp_path / "out").exists()


def test_written_file_holds_every_field(tmp_path: Path):
    cfg = RunConfig("b", "o", "participant", steps=3)
    text = cfg.to_toml(tmp_path / "c.toml").read_text()
    for key in asdict(cfg):
        assert f"\n{key} = " in text, key

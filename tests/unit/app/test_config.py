"""The TOML configuration: defaults, overrides, and one clear line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from streaming.app.config import OperandoConfig, load_config
from streaming.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "operando.toml"
    path.write_text(text)
    return path


def test_no_file_gives_the_defaults_and_overrides_apply():
    assert load_config() == OperandoConfig()
    config = load_config(None, ["xrdct.preset=tiny", "xrdct.trim_percentiles=[10, 90]", "xcsct.max_repeats=2"])
    assert config.xrdct.preset == "tiny" and config.xrdct.trim_percentiles == (10.0, 90.0)
    assert config.xcsct.max_repeats == 2 and config.potentiostat == OperandoConfig().potentiostat


def test_a_file_sets_values_and_a_relative_poni_is_found_next_to_it(tmp_path):
    (tmp_path / "geometry.poni").write_text("poni_version: 2\n")
    path = write(tmp_path, '[xrdct]\npreset = "paper"\nponi = "geometry.poni"\nworkers = 2\n'
                           '[potentiostat]\nv_max = 4.1\n')  # fmt: skip
    config = load_config(path, ["xrdct.workers=3"])
    assert config.xrdct.preset == "paper" and config.xrdct.workers == 3
    assert config.xrdct.poni == tmp_path / "geometry.poni" and config.potentiostat.v_max == 4.1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[xrdct]\nprest = 'tiny'\n", r"xrdct\.prest: unknown key \(did you mean 'xrdct\.preset'\?\)"),
        ("[xrdtc]\npreset = 'tiny'\n", r"xrdtc: unknown key \(did you mean 'xrdct'\?\)"),
        ("[xrdct]\nworkers = 'two'\n", r"xrdct\.workers: expected int, got 'two'"),
        ("[xrdct]\ntrim_percentiles = [95, 5]\n", r"xrdct\.trim_percentiles: need 0 <= low < high"),
        ("[xrdct]\npreset = 'huge'\n", r"xrdct\.preset: must be one of"),
        ("[xrdct]\nponi = 'missing.poni'\n", r"xrdct\.poni: no such file"),
        ("[potentiostat]\nv_max = 4.5\n", r"potentiostat\.v_max: 4\.5 V is outside the safe range"),
        ("[potentiostat]\nv_min = 4.0\nv_max = 3.9\n", r"potentiostat\.v_min: must be below v_max"),
        ("[xcsct]\noccupancy = true\n", r"xcsct\.occupancy: expected float, got True"),
        ("xrdct = 3\n", r"xrdct: expected a \[xrdct\] table"),
        ("[xrdct\n", r"not valid TOML"),
    ],
)
def test_each_mistake_is_one_line_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_config(write(tmp_path, text))
    assert "\n" not in str(error.value)


def test_a_missing_file_and_a_bad_override_are_named(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config(None, ["xrdct.preset"])
    with pytest.raises(ConfigError, match=r"xcsct\.flats: must be >= 0"):
        load_config(None, ["xcsct.flats=-1"])


def test_the_epics_section_names_every_device_pv_and_refuses_what_cannot_work(tmp_path):
    config = load_config(None, [])
    assert config.epics.prefix("xrdct", "translation") == "XRD:translation"  # a motor record: the record's name
    assert config.epics.prefix("xcsct", "hexitec") == "XCS:hexitec:"  # cam1:, Pva1:Image under it
    path = tmp_path / "beamline.toml"
    path.write_text('[epics]\nsimulate = false\ncapacity_ah = 0.6\npvs = ["xrdct.translation=BL12I-MO-HEX-01:X"]\n')
    beamline = load_config(path).epics
    assert beamline.prefix("xrdct", "translation") == "BL12I-MO-HEX-01:X"
    assert beamline.prefix("xrdct", "rotation") == "XRD:rotation"
    for overrides, message in (
        (["epics.pvs=['xrdct.hexitec=X:']", "epics.simulate=false", "epics.capacity_ah=1"], "not 'station.device="),
        (["epics.simulate=false"], "epics.capacity_ah: give the cell's nominal capacity"),
        (["epics.pvs=['xrdct.translation=X:']"], "epics.pvs: the simulated IOCs serve"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(None, overrides)

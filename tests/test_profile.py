import json

import pytest

from qa.answer_checks import CHECKS
from qa.conversation import FOLLOWUP_FEATURES, Reading, default_reading
from qa.profile import (RETRIEVERS, SENTENCE_FEATURES, ProfileError, load_profile, parse_profile, profile_path,
                        write_profile)
from qa.rank import FEATURES


def _text(change) -> str:
    data = load_profile().to_dict()
    change(data)
    return json.dumps(data)


def test_the_shipped_profile_names_every_weight():
    profile = load_profile()
    assert profile.name == "default" and profile_path("default").name == "default.json"
    assert set(profile.sentence_weights) == set(RETRIEVERS)
    assert all(set(w) == set(SENTENCE_FEATURES) for w in profile.sentence_weights.values())
    assert set(profile.followup_model) == set(FOLLOWUP_FEATURES)
    known = {"bias", *FEATURES, *CHECKS}
    assert all(set(model) <= known for model in profile.abstention.models.values())
    assert default_reading() == Reading(**profile.conversation)
    assert profile.label == f"default@{profile.sha256[:12]}"


@pytest.mark.parametrize("change, message", [
    (lambda d: d["sentence_weights"]["hybrid"].pop("token"), r"missing name\(s\) \['token'\] in sentence_weights.hybrid"),
    (lambda d: d["sentence_weights"]["bm25"].update(tokn=1.0), r"unknown name\(s\) \['tokn'\] in sentence_weights.bm25"),
    (lambda d: d["followup_model"].pop("same article"), r"missing name\(s\) \['same article'\] in followup_model"),
    (lambda d: d["abstention"]["models"]["dense"].update(cosine=2.0), r"abstention.models.dense weighs unknown"),
    (lambda d: d["abstention"].pop("threshold"), r"missing name\(s\) \['threshold'\] in abstention"),
    (lambda d: d["conversation"].update(locality=0.15), r"unknown name\(s\) \['locality'\] in conversation"),
    (lambda d: d["ranking"]["answer_kinds"].pop("place"), r"missing name\(s\) \['place'\] in ranking.answer_kinds"),
    (lambda d: d["abstention"].update(threshold=1.5), r"abstention.threshold is 1.5"),
    (lambda d: d["reader"].update(weight="high"), r"reader"),
    (lambda d: d["sentence_weights"]["dense"].update(dense="1"), r"sentence_weights.dense.dense must be a number"),
    (lambda d: d.update(format=2), r"format 2"),
    (lambda d: d.update(comment="x"), r"unknown name\(s\) \['comment'\] in the file"),
])
def test_a_profile_with_an_unknown_or_missing_name_is_refused(change, message):
    with pytest.raises(ProfileError, match=message):
        parse_profile(_text(change), "mine.json")


def test_a_changed_profile_is_checked_written_and_read_back(tmp_path):
    changed = load_profile().updated({"reader.weight": 0.2, "sentence_weights.hybrid.token": 3.0}, name="variant")
    assert changed.reader.weight == 0.2 and changed.sentence_weights["hybrid"]["token"] == 3.0
    assert changed.sha256 != load_profile().sha256
    path = write_profile(changed, tmp_path / "variant.json")
    again = load_profile(path)
    assert again.name == "variant" and again.reader == changed.reader and again.to_dict() == changed.to_dict()
    with pytest.raises(ProfileError, match="no 'reader.wieght'"):
        load_profile().updated({"reader.wieght": 1.0})
    with pytest.raises(ProfileError, match="no profile 'nonesuch'"):
        load_profile("nonesuch")


def test_benchmark_overrides_set_settings_and_write_a_changed_profile(tmp_path):
    from qa.profile import configured

    settings = configured({"top_k": 3, "reader.weight": 0.25}, tmp_path, "variant")
    assert settings.top_k == 3 and settings.profile == str(tmp_path / "variant.json")
    assert load_profile(settings.profile).reader.weight == 0.25
    assert configured({"top_k": 3}, tmp_path).profile == "default"  # no profile change: the one in service

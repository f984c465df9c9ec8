import pandas as pd
import pytest

from tweetsim.data.splits import SplitConfig, assign

PARAMS = {"seed": 13, "regimes": ["random", "unseen_brand", "unseen_time"],
          "random": {"val": 0.1, "test": 0.2}, "unseen_brand": {"val": 0.15, "test": 0.2},
          "unseen_time": {"val_from": "2021-10-01", "test_from": "2022-04-01"}}


@pytest.fixture(scope="module")
def splits(sample_table):
    return assign(sample_table, SplitConfig.from_params(PARAMS))


def test_every_row_gets_a_side_in_every_regime(splits, sample_table):
    assert len(splits) == len(sample_table)
    for regime in PARAMS["regimes"]:
        assert set(splits[regime]) == {"train", "val", "test"}


def test_no_company_on_two_sides_of_the_brand_split(splits, sample_table):
    sides = pd.DataFrame({"company": sample_table["company"], "side": splits["unseen_brand"]})
    assert (sides.groupby("company")["side"].nunique() == 1).all()


def test_no_date_on_the_wrong_side_of_the_cut_offs(splits, sample_table):
    d, side = sample_table["date"], splits["unseen_time"]
    val_from, test_from = pd.Timestamp("2021-10-01", tz="UTC"), pd.Timestamp("2022-04-01", tz="UTC")
    assert d[side == "train"].max() < val_from
    assert d[side == "val"].min() >= val_from and d[side == "val"].max() < test_from
    assert d[side == "test"].min() >= test_from


def test_random_fractions_and_determinism(splits, sample_table):
    frac = splits["random"].value_counts(normalize=True)
    assert abs(frac["test"] - 0.2) < 0.03 and abs(frac["val"] - 0.1) < 0.03
    again = assign(sample_table.sample(frac=1, random_state=1), SplitConfig.from_params(PARAMS)).sort_values(["source", "id"])
    assert again.reset_index(drop=True).equals(splits.sort_values(["source", "id"]).reset_index(drop=True))


def test_a_row_keeps_its_side_when_other_rows_go(splits, sample_table):
    half = sample_table.iloc[::2]
    assert assign(half, SplitConfig.from_params(PARAMS))["random"].tolist() == splits["random"].iloc[::2].tolist()


def test_bad_params_are_named():
    table = pd.DataFrame({"source": ["a"], "id": [1], "company": ["c"], "date": [pd.Timestamp("2020-01-01", tz="UTC")]})
    with pytest.raises(ValueError, match="unknown regime 'future'"):
        assign(table, SplitConfig.from_params({**PARAMS, "regimes": ["future"]}))
    with pytest.raises(ValueError, match="must come before"):
        assign(table, SplitConfig.from_params({**PARAMS, "regimes": ["unseen_time"], "unseen_time": {"val_from": "2022-01-01", "test_from": "2021-01-01"}}))
    with pytest.raises(ValueError, match="sum below 1"):
        assign(table, SplitConfig.from_params({**PARAMS, "regimes": ["random"], "random": {"val": 0.5, "test": 0.6}}))

"""baselines: per regime, the constant and per-account median likes, the retrieval tweet and the
strong text baseline consensus_recent (the account's most central recent tweet, tweetsim/text/consensus.py).

Writes data/predictions/likes/{median,account_median}.parquet and
data/predictions/text/{retrieval,consensus_recent}.parquet for the val and test rows of every regime.
usage: python stages/baselines.py [params.yaml] [data]
"""

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import sys
from pathlib import Path

import pandas as pd

from tweetsim.text import embed
from tweetsim.text.runtime import EncoderConfig
from tweetsim.likes.baselines import likes_baselines
from tweetsim.text.consensus import ConsensusRecent
from tweetsim.text.retrieval import Retriever
from tweetsim.likes.features import known_splits_for_test
from tweetsim.data.schema import read_tweets
from tweetsim.config.params import load_params


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data") -> None:
    params = load_params(params_path)
    p = params["baselines"]
    data = Path(data_dir)
    table = read_tweets(data / "tweets.parquet").merge(pd.read_parquet(data / "splits.parquet"), on=["source", "id"])
    enc = EncoderConfig.from_params(params["encoder"])
    embed_fn = embed.embedder(p["embed_model"], enc, p["caption_similarity"])
    likes_out, text_out, consensus_out = {"median": [], "account_median": []}, [], []
    test_history = known_splits_for_test(params["train_like_classifier"]["test_history"])
    for regime in params["split"]["regimes"]:
        side = table[regime]
        labelled = table["likes"].notna()
        train = table[(side == "train") & labelled]
        known = table[side.isin(test_history) & labelled]  # what a test row's account history may use
        for split, hist in (("val", train), ("test", known)):
            part = table[(side == split) & labelled]
            for name, pred in likes_baselines(train, part, hist).items():
                likes_out[name].append(pd.DataFrame({"regime": regime, "source": part["source"].to_numpy(),
                                                     "id": part["id"].to_numpy(), "pred_likes": pred}))
        retriever = Retriever(table[side == "train"], embed_fn)
        queries = table[side.isin(["val", "test"]) & table["content"].notna()]
        text_out.append(pd.DataFrame({"regime": regime, "source": queries["source"].to_numpy(),
                                      "id": queries["id"].to_numpy(), "pred_content": retriever.texts(queries)}))
        consensus = ConsensusRecent(table[side == "train"], int(p["consensus_recent_n"]))
        consensus_out.append(pd.DataFrame({"regime": regime, "source": queries["source"].to_numpy(),
                                           "id": queries["id"].to_numpy(), "pred_content": consensus.texts(queries)}))
        n_eval = int((side.isin(["val", "test"]) & labelled).sum())
        print(f"baselines {regime}: {len(train)} training rows with likes, {n_eval} val/test rows with likes, "
              f"{len(queries)} val/test rows with content")
    for kind, frames in (("likes", likes_out), ("text", {"retrieval": text_out, "consensus_recent": consensus_out})):
        (data / "predictions" / kind).mkdir(parents=True, exist_ok=True)
        for name, parts in frames.items():
            pd.concat(parts, ignore_index=True).to_parquet(data / "predictions" / kind / f"{name}.parquet", index=False)


if __name__ == "__main__":
    main(*sys.argv[1:])

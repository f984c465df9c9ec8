"""The tweet writer: generate candidates, then choose among them well.

    pools.py     candidate pools per row (account, brand, caption neighbours, look-alike brands,
                 the pool's most typical tweets, optionally the LM's drafts), with their origin
    textsim.py   tweet-to-tweet similarity for whole pools (n-gram overlap, ROUGE-L, CIDEr-D)
    select.py    consensus (MBR) selection, the reranker's features, labels and training
    edits.py     light edits of the chosen tweet (placeholders, brand substitution)
    lm.py        the fine-tuned LM's sampled drafts as candidates (optional)

    tweet_writer.py  TweetWriter: pools -> selection -> edits, what the `select_text` stage,
                 `tweetsim generate` and the web app use; the artefacts it loads (`writer.json`,
                 `reranker.json`) are written by its `save`, next to `load`
    writers.py   the LM writer and select_writer, loaded as the command and the web app use them
    fit.py       each regime's writer fitted on its training rows, tuned on val and saved, and its
                 choices for the val and test rows (the `select_text` stage)
"""

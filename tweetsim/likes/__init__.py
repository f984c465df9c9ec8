"""Layer 4: behaviour simulation. Features, the like classifier, bucket regressors, per-regime
fitting, the regimes' combined likes, the deploy fit, ranges, reasons, best time, the behaviour LM and
its prompt, the likes metrics, and the Predictor."""

import sys, copy, json, time, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from harness import *
from mmsent.finetune.trainer import load_tuned_state
from mmsent.training.metrics import compute_metrics
from sklearn.model_selection import StratifiedKFold

args = dict(a.split("=", 1) for a in sys.argv[1:])
last_n = int(args.get("last_n", 2)); K = int(args.get("folds", 0)); tag = args.get("tag", "x")
MODELS = args.get("models", "text_only,gated,concat").split(",")
cfg, ds, split, feats, ex, labels = setup()
ntr = len(split.train)
y = [label_to_index(e.label) for e in ex]
adapter, rows = trunk_cache(cfg, ex, "text", last_n)
ecfg, fcfg = variant_configs(cfg, "text", last_n, args)
base = {k: v.clone() for k, v in adapter.tuned_state().items()}
print("ecfg", ecfg, flush=True)
t = time.time()
res = tune(adapter, rows, list(range(ntr)), y, ecfg, fcfg)
print("tune s", round(time.time() - t), [(h["epoch"], round(h.get("holdout_macro_f1", 0), 3), round(h["train_loss"], 3)) for h in res.history], flush=True)
mf = text_top_features(adapter, rows)
with torch.no_grad():
    lv = res.head(mf.pooled[ntr:]).argmax(1).numpy()
print("encoder head val", compute_metrics(np.array(y[ntr:]), lv)["macro_f1"], flush=True)
out = {}
f2 = FeatureSet(feats.guids, feats.image, mf)
out["naive"] = score(cfg, f2, split, labels, MODELS)
print("naive", out["naive"], flush=True)
torch.save(mf, f"{OUT}/feat-text-{tag}-naive.pt")
if K:
    P = mf.pooled.clone(); T = mf.tokens.clone(); M = mf.mask.clone()
    VA = None
    skf = StratifiedKFold(K, shuffle=True, random_state=0)
    for f, (tr, te) in enumerate(skf.split(np.zeros(ntr), y[:ntr])):
        load_tuned_state(adapter.network, base)
        tune(adapter, rows, [int(i) for i in tr], y, ecfg, fcfg)
        m = text_top_features(adapter, [rows[i] for i in te])
        P[te] = m.pooled; T[te] = m.tokens; M[te] = m.mask
        mv = text_top_features(adapter, rows[ntr:])
        VA = mv if VA is None else ModalityFeatures(VA.pooled + mv.pooled, VA.tokens + mv.tokens, VA.mask)
        print("fold", f, flush=True)
    f3 = FeatureSet(feats.guids, feats.image, ModalityFeatures(P, T, M))
    torch.save(f3.text, f"{OUT}/feat-text-{tag}-oof.pt")
    VA = ModalityFeatures(VA.pooled / K, VA.tokens / K, VA.mask)
    MA = ModalityFeatures(torch.cat([f3.text.pooled[:ntr], VA.pooled]), torch.cat([f3.text.tokens[:ntr], VA.tokens]), f3.text.mask)
    f4 = FeatureSet(feats.guids, feats.image, MA)
    torch.save(MA, f"{OUT}/feat-text-{tag}-avg.pt")
    out["oof_avg"] = score(cfg, f4, split, labels, MODELS)
    print("oof_avg", out["oof_avg"], flush=True)
    out["oof"] = score(cfg, f3, split, labels, MODELS)
    print("oof", out["oof"], flush=True)
json.dump({"args": args, **out}, open(f"{OUT}/res-text-{tag}.json", "w"))

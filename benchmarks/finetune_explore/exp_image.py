import sys, copy, json, time, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from harness import *
from mmsent.finetune.trainer import load_tuned_state
from mmsent.training.metrics import compute_metrics
from sklearn.model_selection import StratifiedKFold

args = dict(a.split("=", 1) for a in sys.argv[1:])
last_n = int(args.get("last_n", 2)); K = int(args.get("folds", 0)); tag = args.get("tag", "x")
MODELS = args.get("models", "image_only,gated,concat").split(",")
cfg, ds, split, feats, ex, labels = setup()
ntr = len(split.train)
y = [label_to_index(e.label) for e in ex]
adapter, rows = trunk_cache(cfg, ex, "image", last_n)
ecfg, fcfg = variant_configs(cfg, "image", last_n, args)
if args.get("aug") == "flip":
    _fwd = adapter.forward
    def fwd(rows_):
        if adapter.network._blocks[-1].training:
            g = torch.rand(len(rows_)) < 0.5
            rows_ = [torch.flip(r, dims=(-1,)) if f else r for r, f in zip(rows_, g)]
        return _fwd(rows_)
    adapter.forward = fwd
if int(args.get("views", 0)):
    V = int(args["views"])
    vlists = [torch.load(OUT / f"trunk-image-{last_n}-view{v}.pt", weights_only=False) for v in range(V)]
    alt = {id(rows[i]): [rows[i]] + [vl[i] for vl in vlists] for i in range(ntr)}
    _fwd2 = adapter.forward
    def fwd2(rows_):
        if adapter.network._blocks[-1].training:
            rows_ = [alt[id(r)][int(torch.randint(0, V + 1, ()))] if id(r) in alt else r for r in rows_]
        return _fwd2(rows_)
    adapter.forward = fwd2
base = {k: v.clone() for k, v in adapter.tuned_state().items()}
print("ecfg", ecfg, flush=True)
t = time.time()
res = tune(adapter, rows, list(range(ntr)), y, ecfg, fcfg)
print("tune s", round(time.time() - t), [(h["epoch"], round(h.get("holdout_macro_f1", 0), 3), round(h["train_loss"], 3)) for h in res.history], flush=True)
mf = top_features(adapter, rows, "image")
with torch.no_grad():
    lv = res.head(mf.pooled[ntr:]).argmax(1).numpy()
print("encoder head val", compute_metrics(np.array(y[ntr:]), lv)["macro_f1"], flush=True)
out = {}
f2 = FeatureSet(feats.guids, mf, feats.text)
out["naive"] = score(cfg, f2, split, labels, MODELS)
print("naive", out["naive"], flush=True)
torch.save(mf, f"{OUT}/feat-image-{tag}-naive.pt")
if K:
    P = mf.pooled.clone(); T = mf.tokens.clone()
    VA = None
    skf = StratifiedKFold(K, shuffle=True, random_state=0)
    for f, (tr, te) in enumerate(skf.split(np.zeros(ntr), y[:ntr])):
        load_tuned_state(adapter.network, base)
        tune(adapter, rows, [int(i) for i in tr], y, ecfg, fcfg)
        m = top_features(adapter, [rows[i] for i in te], "image")
        P[te] = m.pooled; T[te] = m.tokens
        mv = top_features(adapter, rows[ntr:], "image")
        VA = mv if VA is None else ModalityFeatures(VA.pooled + mv.pooled, VA.tokens + mv.tokens, VA.mask)
        print("fold", f, flush=True)
    f3 = FeatureSet(feats.guids, ModalityFeatures(P, T, mf.mask), feats.text)
    torch.save(f3.image, f"{OUT}/feat-image-{tag}-oof.pt")
    VA = ModalityFeatures(VA.pooled / K, VA.tokens / K, VA.mask)
    MA = ModalityFeatures(torch.cat([f3.image.pooled[:ntr], VA.pooled]), torch.cat([f3.image.tokens[:ntr], VA.tokens]), f3.image.mask)
    f4 = FeatureSet(feats.guids, MA, feats.text)
    torch.save(MA, f"{OUT}/feat-image-{tag}-avg.pt")
    out["oof_avg"] = score(cfg, f4, split, labels, MODELS)
    print("oof_avg", out["oof_avg"], flush=True)
    out["oof"] = score(cfg, f3, split, labels, MODELS)
    print("oof", out["oof"], flush=True)
json.dump({"args": args, **out}, open(f"{OUT}/res-image-{tag}.json", "w"))

"""How much of recall@10 against exact f32 search the int8 codes lose, by quantisation scale (docs/BENCHMARKS.md,
"Real embeddings at 10k"). Synthetic vectors shaped like `cairn-bench scale`'s (256 clusters in a 24-dimensional
subspace of 384 plus noise, unit length); exact top-10 over codes `clip(round(x * scale), -127, 127)` against exact
top-10 in f32. Cairn commits scale 127 today. Usage: python3 scripts/quantisation-experiment.py N (needs numpy).
"""
import numpy as np, sys
rng=np.random.default_rng(1)
dim=384; L=24; C=256
N=int(sys.argv[1]); Q=200
basis=rng.standard_normal((L,dim)).astype(np.float32)
cent=rng.standard_normal((C,L)).astype(np.float32)
def gen(n):
    c=cent[rng.integers(0,C,n)]
    z=(c+0.6*rng.standard_normal((n,L)).astype(np.float32))/np.sqrt(dim)
    v=0.15*rng.standard_normal((n,dim)).astype(np.float32)+z@basis
    return v/np.linalg.norm(v,axis=1,keepdims=True)
X=gen(N); q=gen(Q)
print("max abs comp", np.abs(X).max(), "p99.9", np.quantile(np.abs(X),0.999), "std", X.std())
def topk(S,k=10): return np.argsort(-S,axis=1,kind='stable')[:,:k]
truth=topk(q@X.T)
for s in [127, 254, 381, 508, 762]:
    qx=np.clip(np.round(X*s),-127,127).astype(np.int32); qq=np.clip(np.round(q*s),-127,127).astype(np.int32)
    clip=(np.abs(np.round(X*s))>127).mean()
    r=topk((qq@qx.T).astype(np.float64))
    rec=np.mean([len(set(a)&set(b))/10 for a,b in zip(truth,r)])
    print(f"scale {s}: recall@10 vs f32 {rec:.4f} clipped frac {clip:.2e}")

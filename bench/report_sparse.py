"""Tables of the "sparse II" session (bench/run_sparse_benches.sh OUT): the CSC layer against
fista_csc.py, the SC loss against sc_loss.py (ours as a plain program; before 2026-12-06 also with the benches' caching allocator and
without it), from criterion's estimates and the peers' JSON (the faster of the two peer
runs). The DCEA, memory and accuracy tables are the examples' own output, appended as they are.

Usage: python3 bench/report_sparse.py OUT_DIR > OUT_DIR/report.md
"""
import json, os, sys
O = sys.argv[1]
def crit(root, group, fn, param):
    f = os.path.join(root, group, fn, param, 'new', 'estimates.json')
    if not os.path.exists(f): return None
    return json.load(open(f))['median']['point_estimate'] / 1e6
def peers(name):
    rows = {}
    for suffix in ['', '_after']:
        f = os.path.join(O, f'{name}{suffix}.json')
        if not os.path.exists(f): continue
        for r in json.load(open(f))['runs']:
            for x in r['results']:
                key = (r['threads'], x['lib'], x.get('N', x.get('iters')), x['mode'])
                rows[key] = min(rows.get(key, 1e18), x['ms_median'])
    return rows
fc = peers('fista_csc')
print('| case | threads | sparsegrad ms | torch ms | jax ms | sparsegrad / torch | sparsegrad / jax |')
print('|---|---|---|---|---|---|---|')
for t in (1, 2):
    for T in (2, 10):
        for mode, fn in (('fwd', 'forward'), ('fwd_bwd', 'fwd_bwd')):
            ours = crit(os.path.join(O, 'criterion'), f'csc_t{t}', fn, f'T{T}')
            if ours is None: continue
            to, ja = fc.get((t, 'torch', T, mode)), fc.get((t, 'jax', T, mode))
            f = lambda v: '–' if v is None else f'{v:.1f}'
            r = lambda p: '–' if p is None else f'{ours / p:.2f}'
            print(f'| T = {T} {mode} | {t} | {ours:.1f} | {f(to)} | {f(ja)} | {r(to)} | {r(ja)} |')
    imp = crit(os.path.join(O, 'criterion'), f'csc_t{t}', 'implicit_fwd_bwd', 'T200_lambda0.5')
    if imp: print(f'| implicit fwd_bwd, λ = 0.5, T = 200, CG 1e-4 | {t} | {imp:.1f} | – | – | – | – |')
print()
for tag, root, pname in (('a plain program (no global allocator)', 'criterion', 'sc_loss'),):
    sc = peers(pname)
    print(f'{tag}:\n')
    print('| N | mode | threads | fused ms | fused, in pool ms | composed ms | literal ms | torch ms | jax ms | fused / jax | composed / fused | literal / fused |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|')
    for t in (1, 2):
        for N in (128, 512):
            for mode in ('fwd', 'fwd_bwd'):
                g = f'sc_loss_f32_t{t}'
                fu = crit(os.path.join(O, root), g, f'fused_{mode}', str(N))
                fp = crit(os.path.join(O, root), g, f'fused_{mode}_in_pool', str(N))
                co = crit(os.path.join(O, root), g, f'composed_{mode}', str(N))
                li = crit(os.path.join(O, root), g, f'literal_{mode}', str(N))
                to, ja = sc.get((t, 'torch', N, mode)), sc.get((t, 'jax', N, mode))
                if fu is None: continue
                f = lambda v: '–' if v is None else f'{v:.3f}'
                fj = '–' if ja is None else f'{fu / ja:.2f}'
                cf = '–' if co is None else f'{co / fu:.2f}'
                lf = '–' if li is None else f'{li / fu:.1f}'
                print(f'| {N} | {mode} | {t} | {f(fu)} | {f(fp)} | {f(co)} | {f(li)} | {f(to)} | {f(ja)} | {fj} | {cf} | {lf} |')
    print()

for name in ('dcea_timing.txt', 'csc_memory.txt', 'csc_accuracy.txt'):
    f = os.path.join(O, name)
    if os.path.exists(f):
        print(f'{name}:\n\n```text\n{open(f).read().rstrip()}\n```\n' if name == 'dcea_timing.txt' else f'{name}:\n\n{open(f).read().rstrip()}\n')
f = os.path.join(O, 'dcea.json')
if os.path.exists(f):
    for r in json.load(open(f))['runs']:
        for x in r['results']:
            print(f"- dcea.py torch, {r['threads']} thread(s), {x['mode']}: {x['ms_median']:.0f} ms (min {x['ms_min']:.0f})")

"""Hand-written mutants of hil_af/model/realrank.py, each run against tests/test_realrank.py (docs/mutation.md,
"The real-capture ranking stage").  mutmut's ~150 mutants of the module at ~80 s of tests each do not fit
the 2-core box; these are the ones that would move the real-capture figure.  Restores the file at the end.
``python benchmarks/mutation_realrank.py`` prints killed / SURVIVED per mutant."""
import subprocess
P='hil_af/model/realrank.py'
orig=open(P).read()
M=[
 ("pair_loss sign", "softplus(-(d[i] - d[j]) / tau)", "softplus((d[i] - d[j]) / tau)"),
 ("pair_loss margin dir", "(gi[:, None] - gi[None, :]) >= margin", "(gi[None, :] - gi[:, None]) >= margin"),
 ("estimate drops k", "    e = p @ torch.arange(p.shape[1], dtype=torch.float32) - float(k)\n", "    e = p @ torch.arange(p.shape[1], dtype=torch.float32)\n"),
 ("readout without the side rule", "    return far_end_defocus(ask, n)[0]", "    return ask(0)[0]"),
 ("rank ask mid", "x, owner = encode_cells(s, idx, 0, n, cfg, shift)", "x, owner = encode_cells(s, idx, mid, n, cfg, shift)"),
 ("no restore best", "    model.load_state_dict(best_state)\n", ""),
 ("bn not frozen", "                m.eval()\n", "                pass\n"),
 ("keep last not best", "            if v > best:", "            if True:"),
 ("no side term", "        if rc.side > 0:", "        if rc.side < 0:"),
 ("min_cells ignored", "        if keep.sum() >= min_cells:", "        if True:"),
 ("no jitter", "shift = rng.integers(-rc.jitter, rc.jitter + 1, size=(len(idx), 2)) if rc.jitter else None", "shift = None"),
 ("mean not per-cell", "    return s / torch.bincount(o, minlength=n_cells).to(torch.float32)", "    return s / 9.0"),
]
res=[]
try:
    for name, a, b in M:
        assert orig.count(a)==1, name
        open(P,'w').write(orig.replace(a,b))
        r=subprocess.run([".venv/bin/python","-m","pytest","-q","-x","-p","no:cacheprovider","tests/test_realrank.py"],capture_output=True,text=True)
        res.append((name, "killed" if r.returncode else "SURVIVED"))
        print(name, res[-1][1], flush=True)
finally:
    open(P,'w').write(orig)

"""A/B of one training-step figure (throughput.py worker, repeats): same batches, each batch stepped
REPEATS times and the fastest kept; prints structures/s (wall and CPU) and upstream / ours.

    python benchmarks/train_ab.py ours,upstream small fe 5 3     # sides size dataset batches repeats
"""
import sys, json, time, os, gc
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import throughput as T
def worker(side_name, size, ds, nb, reps, tuned):
    if tuned:
        from hopnet.infra.runtime import tune_allocator; tune_allocator()
    import torch
    torch.set_num_threads(1)
    side = T.SIDES[side_name]()
    gb, tb, _ = T._prepared_batches(side, ds, nb, None)
    torch.manual_seed(0)
    model = side.model(size); model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)   # as throughput.py
    walls, cpus = [], []
    for g, y in zip(gb, tb):
        bw, bc = [], []
        for _ in range(reps):
            t0 = time.perf_counter(); c0 = time.process_time()
            batch = side.collate(g)
            pred = side.predict(model, batch)
            loss = torch.nn.functional.l1_loss(pred.float(), y)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
            bw.append(time.perf_counter() - t0); bc.append(time.process_time() - c0)
        walls.append(min(bw)); cpus.append(min(bc))
    walls, cpus = walls[1:], cpus[1:]
    print("RESULT", json.dumps({"wall": sum(walls), "cpu": sum(cpus), "n": len(walls)}))
if __name__ == "__main__" and sys.argv[1] == "w":
    worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), sys.argv[7] == "1")
    sys.exit()
import subprocess
sides = sys.argv[1].split(","); size = sys.argv[2]; ds = sys.argv[3]; nb = int(sys.argv[4]); reps = int(sys.argv[5])
tuned_up = len(sys.argv) > 6 and sys.argv[6] == "tuned"
env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
res = {}
for s in sides:
    out = subprocess.run([sys.executable, __file__, "w", s, size, ds, str(nb), str(reps), "1" if (s == "ours" or tuned_up) else "0"],
                         capture_output=True, text=True, env=env)
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT")]
    if not line: print(out.stderr[-2000:]); continue
    r = json.loads(line[0][7:]); res[s] = r
    print(f"{s:9s} {size} {ds}: wall {16*r['n']/r['wall']:.1f}/s  cpu {16*r['n']/r['cpu']:.1f}/s")
if len(res) == 2:
    print(f"ratio wall {res['upstream']['wall']/res['ours']['wall']:.2f}x  cpu {res['upstream']['cpu']/res['ours']['cpu']:.2f}x")

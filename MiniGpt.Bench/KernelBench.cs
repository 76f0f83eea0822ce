using BenchmarkDotNet.Attributes;
using MiniGpt.Layers;
using MiniGpt.Tensors;
using MiniGpt.Training;

namespace MiniGpt.Bench;

/// <summary>
/// Every non-matmul kernel of a training step at the shapes of workloads WA, WB and WC, through the kernel
/// interface the model runs (IKernels): Kernels.Fast against the readable Kernels.Reference (Impl = Reference):
/// attention forward (projections, scores, pattern, mix, W_O) and backward, materialised or tiled (AttnForwardTiled,
/// AttnBackwardTiled: no [B, H, T, T] pattern, recomputed in backward), LayerNorm, softmax (one
/// attention row of length n_ctx per row, N rows), GELU (over [N, d_mlp]; d_mlp 1024 for WA),
/// cross-entropy over [N, 65] and AdamW over the workload's parameters.
/// </summary>
[Config(typeof(BenchConfig))]
public class KernelBench
{
    [Params("WA", "WB", "WC")]
    public string Workload { get; set; } = "WC";

    [Params("AttnForward", "AttnBackward", "AttnForwardTiled", "AttnBackwardTiled", "LayerNormForward", "LayerNormBackward", "Softmax", "GeluForward", "GeluBackward",
        "CrossEntropyForward", "CrossEntropyBackward", "AdamW")]
    public string Kernel { get; set; } = "AttnForward";

    [Params("Fast", "Reference")]
    public string Impl { get; set; } = "Fast";

    private int _b, _t, _d, _h, _dh, _m, _v, _n;
    private float[] _x = [], _q = [], _k = [], _vv = [], _s = [], _p = [], _z = [], _out = [], _w = [], _bias = [], _gw = [], _gb = [];
    private float[] _dq = [], _dk = [], _dv = [], _dz = [], _dx = [], _mean = [], _rstd = [], _xhat = [], _g = [], _max = [], _sum = [];
    private float[] _pre = [], _post = [], _dpre = [], _logits = [], _dlogits = [], _losses = [];
    private int[] _targets = [];
    private Trainer? _trainer;

    [GlobalSetup]
    public void Setup()
    {
        var o = TrainStepBench.OptionsFor(Workload);
        var m = o.Model;
        _b = o.BatchSize; _t = m.NCtx; _d = m.DModel; _h = m.NHeads; _dh = _d / _h; _m = m.DMlp > 0 ? m.DMlp : 1024; _v = m.DVocab > 0 ? m.DVocab : 65; _n = _b * _t;
        var rng = new Random(42);
        float[] Fill(int n, float scale = 1) { var a = new float[n]; for (int j = 0; j < n; j++) a[j] = (float)(rng.NextDouble() * 2 - 1) * scale; return a; }
        int nd = _n * _d, tt = _b * _h * _t * _t;
        _x = Fill(nd); _q = Fill(nd); _k = Fill(nd); _vv = Fill(nd); _s = new float[tt]; _p = new float[tt]; _z = new float[nd]; _out = new float[nd];
        _w = Fill(_d * _d, 0.05f); _bias = Fill(_d * 4); _gw = new float[_d * _d]; _gb = new float[_d * 4];
        _dq = new float[nd]; _dk = new float[nd]; _dv = new float[nd]; _dz = new float[nd]; _dx = new float[nd];
        _mean = new float[_n]; _rstd = new float[_n]; _xhat = new float[_d]; _g = new float[_d]; _max = new float[_n * _h]; _sum = new float[_n * _h];
        _pre = Fill(_n * _m, 3); _post = new float[_n * _m]; _dpre = new float[_n * _m];
        _logits = Fill(_n * _v, 3); _dlogits = new float[_n * _v]; _losses = new float[_n];
        _targets = new int[_n]; for (int i = 0; i < _n; i++) _targets[i] = rng.Next(_v);
        if (Kernel == "AdamW") { _trainer = Trainer.Start(o, K); _trainer.Step(); }
        AttnFwd(); // patterns for the backward
        AttnFwd(tiled: true); // and the row statistics for the tiled one
        Run();
    }

    private Attention.Weights W => new(_w, _w, _w, _w, _bias.AsSpan(0, _d), _bias.AsSpan(0, _d), _bias.AsSpan(0, _d), _bias.AsSpan(0, _d));

    private IKernels K => Impl == "Fast" ? Kernels.Fast : Kernels.Reference;

    private void AttnFwd(bool tiled = false) =>
        Attention.Forward(K, _x, _x, W, _q, _k, _vv, tiled ? default : _s, tiled ? default : _p, _max, _sum, _z, _out, _b, _t, _d, _h, _dh);

    private void AttnBwd(bool tiled) =>
        Attention.Backward(K, _x, _x, W, new Attention.Grads(_gw, _gw, _gw, _gw, _gb.AsSpan(0, _d), _gb.AsSpan(0, _d), _gb.AsSpan(0, _d), _gb.AsSpan(0, _d)),
            _q, _k, _vv, tiled ? default : _p, _max, _sum, _z, _out, _dq, _dk, _dv, _dz, _dx, _dx, _b, _t, _d, _h, _dh);

    [Benchmark]
    public void Run()
    {
        var k = K;
        switch (Kernel)
        {
            case "AttnForward": AttnFwd(); break;
            case "AttnBackward": AttnBwd(tiled: false); break;
            case "AttnForwardTiled": AttnFwd(tiled: true); break;
            case "AttnBackwardTiled": AttnBwd(tiled: true); break;
            case "LayerNormForward": k.LayerNormForward(_x, _bias.AsSpan(0, _d), _bias.AsSpan(_d, _d), _out, _mean, _rstd, _n, _d); break;
            case "LayerNormBackward":
                k.LayerNormBackward(_x, _bias.AsSpan(0, _d), _mean, _rstd, _out, _dx, _gb.AsSpan(0, _d), _gb.AsSpan(_d, _d), _xhat, _g, _n, _d);
                break;
            case "Softmax":
                for (int r = 0; r < _n; r++) Softmax.Forward(_s.AsSpan(r * _t, _t), _p.AsSpan(r * _t, _t));
                break;
            case "GeluForward": k.GeluForward(_pre, _post); break;
            case "GeluBackward": k.GeluBackward(_pre, _post, _dpre, _dpre, accumulate: false); break;
            case "CrossEntropyForward": k.CrossEntropyForward(_logits, _targets, _losses, _n, _v); break;
            case "CrossEntropyBackward": k.CrossEntropyBackward(_logits, _targets, _dlogits, 1f / _n, _n, _v); break;
            case "AdamW": _trainer!.Optimizer.Update(1e-6f); break;
            default: throw new ArgumentException($"unknown kernel '{Kernel}'");
        }
    }
}

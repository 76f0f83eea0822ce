using System.Diagnostics;
using MiniGpt.Model;

namespace MiniGpt.Patching;

/// <summary>
/// Attribution patching (Nanda 2023, "Attribution Patching: Activation Patching At Industrial Scale"): the
/// first-order Taylor estimate of every cell of activation patching at once,
///   m(a_corrupted + Δ) − m_corrupted ≈ Σ_slice (a_clean − a_corrupted) · ∂m/∂a |_corrupted,
/// from one forward pass of the clean prompts (a cache), one of the corrupted prompts (a cache), and one
/// backward pass of the metric through the corrupted run. The metric's gradient enters through a backward
/// hook on "logits" that replaces d loss/d logits with ∂m/∂logits; backward hooks at each site's point
/// read ∂m/∂a. Exact where m is linear in the activation (e.g. logit difference against the final residual
/// stream of a model without LayerNorm); poor where a nonlinearity between the site and the metric
/// saturates (a softmax near one-hot: its gradient is ~0 although patching moves it a long way).
/// Values are normalised as exact patching's: estimate/(m_clean − m_corrupted). Leaves ∂m/∂θ in model.Grads.
/// </summary>
public static class AttributionPatching
{
    public static IReadOnlyList<PatchGrid> Run(GptModel m, PatchPrompts p, PatchMetric metric, IReadOnlyList<PatchSpec> specs)
    {
        var c = m.Config;
        foreach (var s in specs) s.Validate(c);
        ActivationPatching.CheckFits(m, p);
        var clock = Stopwatch.StartNew();
        int B = p.Batch, T = p.SeqLen;
        var names = specs.SelectMany(s => Enumerable.Range(0, c.NLayers).Select(s.HookName)).ToHashSet();
        var clean = m.RunWithCache(p.Clean, B, T, names.Contains);
        double mClean = metric.Value(m.Logits, p, c.DVocab);

        // corrupted forward with a cache, then the metric's backward with a copy of the gradient at every site
        var grads = new Dictionary<string, float[]>();
        var handles = new List<IDisposable>
        {
            m.Hooks.AddBackward("logits", (d, _) => metric.Gradient(m.Logits, p, c.DVocab, d.Span)),
        };
        foreach (var n in names) handles.Add(m.Hooks.AddBackward(n, (d, _) => grads[n] = d.Span.ToArray()));
        double mCorrupted;
        ActivationCache corrupted;
        try
        {
            // Backward needs targets; the hook on logits overwrites what the loss would have sent back
            corrupted = m.RunWithCache(p.Corrupted, B, T, names.Contains, targets: new int[B * T]);
            mCorrupted = metric.Value(m.Logits, p, c.DVocab);
            m.ZeroGrad();
            m.Backward(1f);
        }
        finally { foreach (var h in handles) h.Dispose(); }
        double seconds = clock.Elapsed.TotalSeconds;

        var grids = new List<PatchGrid>();
        foreach (var spec in specs)
        {
            var (axes, shape) = spec.Dimensions(c, T);
            int cells = shape.Aggregate(1, (a, b) => a * b);
            var values = new double[cells];
            var raw = new double[cells];
            for (int i = 0; i < cells; i++)
            {
                var cell = ActivationPatching.CellOf(spec, shape, i);
                var a1 = clean[cell.HookName].Span;
                var a0 = corrupted[cell.HookName].Span;
                var g = grads[cell.HookName].AsSpan();
                double est = 0;
                foreach (var (at, n) in ActivationPatching.Runs(cell, c, B, T))
                    for (int j = at; j < at + n; j++) est += ((double)a1[j] - a0[j]) * g[j];
                raw[i] = mCorrupted + est;
                values[i] = PatchGrid.Normalise(raw[i], mClean, mCorrupted);
            }
            grids.Add(new PatchGrid(spec.Name, "attribution", axes, shape, values, raw, mClean, mCorrupted, seconds));
        }
        return grids;
    }
}

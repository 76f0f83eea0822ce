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

        var computed = new List<(PatchSpec Spec, string[] Axes, int[] Shape, double[] Values, double[] Raw)>();
        foreach (var spec in specs)
        {
            var (axes, shape) = spec.Dimensions(c, T);
            int cells = shape.Aggregate(1, (a, b) => a * b);
            var values = new double[cells];
            var raw = new double[cells];
            // the hook arrays of each layer, looked up once (a cell's HookName builds its string)
            var a1 = new float[c.NLayers][];
            var a0 = new float[c.NLayers][];
            var gs = new float[c.NLayers][];
            for (int l = 0; l < c.NLayers; l++)
            {
                string n = spec.HookName(l);
                a1[l] = clean[n].Span.ToArray();
                a0[l] = corrupted[n].Span.ToArray();
                gs[l] = grads[n];
            }
            for (int i = 0; i < cells; i++)
            {
                var cell = ActivationPatching.CellOf(spec, shape, i);
                float[] x1 = a1[cell.Layer], x0 = a0[cell.Layer], g = gs[cell.Layer];
                double est = 0;
                foreach (var (at, n) in ActivationPatching.Runs(cell, c, B, T))
                    for (int j = at; j < at + n; j++) est += ((double)x1[j] - x0[j]) * g[j];
                raw[i] = mCorrupted + est;
                values[i] = PatchGrid.Normalise(raw[i], mClean, mCorrupted);
            }
            computed.Add((spec, axes, shape, values, raw));
        }
        // every grid's seconds are the whole run's, its dot products included: one forward and backward serve them all, so
        // no grid has a time of its own, and this is the time PatchComparison.AttributionSeconds reports beside exact's
        double seconds = clock.Elapsed.TotalSeconds;
        var grids = computed.Select(x => new PatchGrid(x.Spec.Name, "attribution", x.Axes, x.Shape, x.Values, x.Raw, mClean, mCorrupted, seconds)).ToList();
        return grids;
    }
}

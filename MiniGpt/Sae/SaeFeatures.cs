using System.Numerics.Tensors;
using MiniGpt.Data;
using MiniGpt.Model;

namespace MiniGpt.Sae;

/// <summary>Where a feature fired: window Window of the batches (its tokens), position Position, with the feature's activation at every position of it.</summary>
public sealed record FeatureContext(int[] Tokens, int Position, float Activation, float[] Activations);

/// <summary>What a reader needs to name a feature: how often and how strongly it fires, its strongest contexts, and the tokens its decoder direction promotes and suppresses.</summary>
public sealed record FeatureSummary(int Index, double Frequency, float MaxActivation, double MeanActivation, IReadOnlyList<FeatureContext> Contexts,
    float[] NonZeroActivations, IReadOnlyList<(int Token, float Logit)> Promoted, IReadOnlyList<(int Token, float Logit)> Suppressed);

/// <summary>
/// Reads an SAE's features on held-out windows: for each feature the windows where it fires most, its activations, and
/// the direct effect of its decoder direction on the logits, W_dec,i·W_U (through W_out first for an MLP's hidden layer,
/// through ln_final's gain when the model has one; LayerNorm's scale and centring, which depend on the whole stream, are
/// left out, as in SAELens's and Neuronpedia's logit tables).
/// </summary>
public static class SaeFeatures
{
    public static IReadOnlyList<FeatureSummary> Analyse(GptModel model, SparseAutoencoder sae, IReadOnlyList<EvalBatch> batches,
        IReadOnlyList<int> features, int contexts = 8, int tokens = 8)
    {
        var c = model.Config;
        int d = sae.Config.DIn, s = sae.Config.DSae, T = c.NCtx;
        var want = new HashSet<int>(features);
        var best = features.ToDictionary(i => i, _ => new List<(float Act, int Batch, int Row, int Pos)>());
        var values = features.ToDictionary(i => i, _ => new List<float>());
        var count = new long[s];
        long rows = 0;
        int maxRows = batches.Max(b => b.Inputs.Length);
        var act = new SaeActivations(sae.Config, maxRows);
        var x = new float[maxRows * d];
        for (int bi = 0; bi < batches.Count; bi++)
        {
            var batch = batches[bi];
            int B = batch.Inputs.Length / T;
            using (model.Hooks.AddForward(sae.Config.HookName, (v, _) => v.Span.CopyTo(x)))
                model.Forward(batch.Inputs, default, B, T);
            sae.Forward(x, B * T, act);
            for (int n = 0; n < B * T; n++)
                for (int i = 0; i < s; i++)
                {
                    float f = act.Features[n * s + i];
                    if (!(f > 0)) continue;
                    count[i]++;
                    if (!want.Contains(i)) continue;
                    values[i].Add(f);
                    var list = best[i];
                    // keep the top `contexts` by activation, at most one per window (the strongest position of it)
                    int same = list.FindIndex(e => e.Batch == bi && e.Row == n / T);
                    if (same >= 0) { if (list[same].Act < f) list[same] = (f, bi, n / T, n % T); }
                    else list.Add((f, bi, n / T, n % T));
                    if (list.Count > 4 * contexts) { list.Sort((a, b) => b.Act.CompareTo(a.Act)); list.RemoveRange(contexts, list.Count - contexts); }
                }
            rows += B * T;
        }

        var direction = LogitDirections(model, sae);
        var result = new List<FeatureSummary>();
        foreach (int i in features)
        {
            var top = best[i].OrderByDescending(e => e.Act).Take(contexts).ToList();
            var ctx = new List<FeatureContext>();
            foreach (var (a, bi, row, pos) in top)
            {
                var batch = batches[bi];
                int B = batch.Inputs.Length / T;
                var window = batch.Inputs.AsSpan(row * T, T).ToArray();
                // the activations along the window: one more SAE pass over the window's rows
                using (model.Hooks.AddForward(sae.Config.HookName, (v, _) => v.Span.CopyTo(x)))
                    model.Forward(window, default, 1, T);
                sae.Forward(x, T, act);
                var along = new float[T];
                for (int t = 0; t < T; t++) along[t] = act.Features[t * s + i];
                ctx.Add(new FeatureContext(window, pos, a, along));
            }
            var logits = direction?.Invoke(i);
            var order = logits == null ? [] : Enumerable.Range(0, logits.Length).OrderByDescending(v => logits[v]).ToArray();
            var vals = values[i].ToArray();
            result.Add(new FeatureSummary(i, (double)count[i] / rows, vals.Length > 0 ? vals.Max() : 0, vals.Length > 0 ? vals.Average() : 0, ctx, vals,
                order.Take(tokens).Select(v => (v, logits![v])).ToList(), order.Reverse().Take(tokens).Select(v => (v, logits![v])).ToList()));
        }
        return result;
    }

    /// <summary>Firing frequency of every feature on the windows (the share of tokens where f_i > 0).</summary>
    public static double[] Frequencies(SaeEvaluationResult r) => r.Frequency;

    /// <summary>
    /// The logit effect of feature i's decoder direction, or null when the hook does not write to the residual stream
    /// through a known linear map (hook_z, q/k/v, the LayerNorm outputs).
    /// </summary>
    private static Func<int, float[]>? LogitDirections(GptModel model, SparseAutoencoder sae)
    {
        var c = model.Config;
        string hook = sae.Config.HookName;
        int d = sae.Config.DIn, D = c.DModel, V = c.DVocab;
        var kind = model.HookShapeOf(hook);
        bool residual = kind == HookShape.Residual && !hook.Contains("ln") && !hook.EndsWith("hook_embed") && !hook.EndsWith("hook_pos_embed");
        bool mlpPost = hook.EndsWith("mlp.hook_post");
        if (!residual && !mlpPost) return null;
        var wU = model.Params["unembed.W_U"].Span.ToArray(); // [D, V]
        float[]? lnW = c.HasLayerNormParams ? model.Params["ln_final.w"].Span.ToArray() : null;
        float[]? wOut = mlpPost ? model.Params[$"blocks.{sae.Config.HookLayer}.mlp.W_out"].Span.ToArray() : null; // [d_mlp, D]
        var dec = sae.WDec.ToArray();
        return i =>
        {
            var r = new float[D];
            var row = dec.AsSpan(i * d, d);
            if (wOut != null)
                for (int m = 0; m < d; m++) TensorPrimitives.MultiplyAdd(wOut.AsSpan(m * D, D), row[m], r, r);
            else row.CopyTo(r);
            if (lnW != null) TensorPrimitives.Multiply(r, lnW, r);
            var logits = new float[V];
            for (int k = 0; k < D; k++) TensorPrimitives.MultiplyAdd(wU.AsSpan(k * V, V), r[k], logits, logits);
            return logits;
        };
    }
}

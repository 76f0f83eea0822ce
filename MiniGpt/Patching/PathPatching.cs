using System.Diagnostics;
using MiniGpt.Model;

namespace MiniGpt.Patching;

/// <summary>Which input of a receiving head a path ends in.</summary>
public enum PathInput { Q, K, V }

public enum PathSenderKind { Embeddings, Head, Mlp }

/// <summary>A component that writes into the residual stream: the embeddings (token and position), one head, or one MLP.</summary>
public readonly record struct PathSender(PathSenderKind Kind, int Layer = -1, int Head = -1)
{
    public static PathSender Embeddings => new(PathSenderKind.Embeddings);
    public static PathSender OfHead(int layer, int head) => new(PathSenderKind.Head, layer, head);
    public static PathSender OfMlp(int layer) => new(PathSenderKind.Mlp, layer);
    public override string ToString() => Kind switch { PathSenderKind.Embeddings => "embed", PathSenderKind.Head => $"L{Layer}H{Head}", _ => $"mlp{Layer}" };
}

/// <summary>One sender's path effect: normalised (0 corrupted, 1 clean) and the raw metric.</summary>
public readonly record struct PathSenderEffect(PathSender Sender, double Value, double Raw);

/// <summary>
/// Path patching (Wang et al. 2022, "Interpretability in the Wild", §3.1 and appendix B), denoising: how much
/// of the clean behaviour comes back when the senders' clean outputs reach the metric only through one input
/// (q, k or v) of one receiving head.
///  1. Run the corrupted prompts with each sender's output set to its clean value and every other component
///     below the receiver's layer (each head's z, each MLP's output) frozen at its corrupted value, so the
///     senders change the receiver's input only directly; record the receiver's q, k or v.
///  2. Run the corrupted prompts with only that head's q, k or v replaced by the recorded one, everything
///     after it free, and read the metric, normalised as activation patching's: 0 corrupted, 1 clean.
/// LayerNorm is recomputed, not frozen, in step 1 (as the paper does). With every component upstream of the
/// receiver as senders, step 1 records the clean input, and the effect is activation patching of that input.
/// </summary>
public static class PathPatching
{
    /// <summary>The normalised effect of senders on the metric through input of head (layer, head).</summary>
    public static double Effect(GptModel m, PatchPrompts p, PatchMetric metric, IReadOnlyList<PathSender> senders, int layer, int head, PathInput input)
    {
        var run = Prepare(m, p, metric, layer, head, senders);
        return PatchGrid.Normalise(run.Patch(senders, input), run.Clean, run.Corrupted);
    }

    /// <summary>
    /// The effect of each head of the layers below the receiver as the only sender: [layer, head], NaN for heads
    /// in the receiver's layer or above. progress gets (cells done, cells).
    /// </summary>
    public static PatchGrid Senders(GptModel m, PatchPrompts p, PatchMetric metric, int layer, int head, PathInput input, Action<int, int>? progress = null) =>
        HeadSenders(Prepare(m, p, metric, layer, head, []), input, progress);

    /// <summary>
    /// The effect of each sender that is not a head as the only sender: the embeddings (token and position), then each
    /// MLP below the receiver's layer, normalised as <see cref="Senders"/>'s cells. A path grid shows which head feeds
    /// the receiver; these show when the receiver reads the tokens themselves or an MLP's output instead.
    /// </summary>
    public static IReadOnlyList<PathSenderEffect> NonHeadSenders(GptModel m, PatchPrompts p, PatchMetric metric, int layer, int head, PathInput input) =>
        OtherSenders(Prepare(m, p, metric, layer, head, []), input);

    /// <summary>
    /// Both of the above from one preparation (the clean and corrupted runs are cached once per receiver). progress gets
    /// (senders done, <see cref="SenderCount"/>): the heads, then the embeddings and the MLPs.
    /// </summary>
    public static (PatchGrid Heads, IReadOnlyList<PathSenderEffect> Others) AllSenders(GptModel m, PatchPrompts p, PatchMetric metric, int layer, int head,
        PathInput input, Action<int, int>? progress = null)
    {
        var run = Prepare(m, p, metric, layer, head, []);
        int heads = layer * m.Config.NHeads, all = SenderCount(m.Config, layer);
        var grid = HeadSenders(run, input, progress == null ? null : (i, _) => progress(i, all));
        return (grid, OtherSenders(run, input, progress == null ? null : i => progress(heads + i, all)));
    }

    /// <summary>The senders of a receiver in layer: every head below it, the embeddings and every MLP below it.</summary>
    public static int SenderCount(ModelConfig c, int layer) => layer * c.NHeads + 1 + (c.HasMlp ? layer : 0);

    private static PatchGrid HeadSenders(Run run, PathInput input, Action<int, int>? progress)
    {
        var c = run.M.Config;
        var clock = Stopwatch.StartNew();
        int H = c.NHeads, cells = c.NLayers * H, layer = run.Layer;
        var values = new double[cells];
        var raw = new double[cells];
        Array.Fill(values, double.NaN);
        Array.Fill(raw, double.NaN);
        for (int l = 0; l < layer; l++)
            for (int h = 0; h < H; h++)
            {
                raw[l * H + h] = run.Patch([PathSender.OfHead(l, h)], input);
                values[l * H + h] = PatchGrid.Normalise(raw[l * H + h], run.Clean, run.Corrupted);
                progress?.Invoke(l * H + h + 1, layer * H);
            }
        string name = $"path_L{layer}H{run.Head}_{input.ToString().ToLowerInvariant()}";
        return new PatchGrid(name, "path", ["layer", "head"], [c.NLayers, H], values, raw, run.Clean, run.Corrupted, clock.Elapsed.TotalSeconds);
    }

    private static IReadOnlyList<PathSenderEffect> OtherSenders(Run run, PathInput input, Action<int>? progress = null)
    {
        var senders = new List<PathSender> { PathSender.Embeddings };
        if (run.M.Config.HasMlp)
            for (int l = 0; l < run.Layer; l++) senders.Add(PathSender.OfMlp(l));
        var effects = new List<PathSenderEffect>();
        foreach (var s in senders)
        {
            double raw = run.Patch([s], input);
            effects.Add(new PathSenderEffect(s, PatchGrid.Normalise(raw, run.Clean, run.Corrupted), raw));
            progress?.Invoke(effects.Count);
        }
        return effects;
    }

    private static Run Prepare(GptModel m, PatchPrompts p, PatchMetric metric, int layer, int head, IReadOnlyList<PathSender> senders)
    {
        var c = m.Config;
        if (layer < 0 || layer >= c.NLayers || head < 0 || head >= c.NHeads)
            throw new UserError($"receiver L{layer}H{head} does not exist: the model has layers 0–{c.NLayers - 1} and heads 0–{c.NHeads - 1}");
        foreach (var s in senders)
        {
            if (s.Kind == PathSenderKind.Head && (s.Head < 0 || s.Head >= c.NHeads || s.Layer < 0))
                throw new UserError($"sender {s} does not exist: the model has heads 0–{c.NHeads - 1}");
            if (s.Kind == PathSenderKind.Mlp && !c.HasMlp) throw new UserError($"sender {s}: the model is attention-only");
            if (s.Kind != PathSenderKind.Embeddings && s.Layer >= layer)
                throw new UserError($"sender {s} is not below the receiver L{layer}H{head}: a path runs from a lower layer to a higher one");
        }
        ActivationPatching.CheckFits(m, p);
        var names = new HashSet<string> { "hook_embed", "hook_pos_embed" };
        for (int l = 0; l < layer; l++)
        {
            names.Add($"blocks.{l}.attn.hook_z");
            if (c.HasMlp) names.Add($"blocks.{l}.hook_mlp_out");
        }
        var clean = m.RunWithCache(p.Clean, p.Batch, p.SeqLen, names.Contains);
        double mClean = metric.Value(m.Logits, p, c.DVocab);
        var corrupted = m.RunWithCache(p.Corrupted, p.Batch, p.SeqLen, names.Contains);
        double mCorrupted = metric.Value(m.Logits, p, c.DVocab);
        return new Run(m, p, metric, layer, head, clean, corrupted, mClean, mCorrupted);
    }

    private sealed record Run(GptModel M, PatchPrompts P, PatchMetric Metric, int Layer, int Head, ActivationCache CleanCache,
        ActivationCache CorruptedCache, double Clean, double Corrupted)
    {
        public double Patch(IReadOnlyList<PathSender> senders, PathInput input)
        {
            var c = M.Config;
            int B = P.Batch, T = P.SeqLen;
            string receiverHook = $"blocks.{Layer}.attn.hook_{input.ToString().ToLowerInvariant()}";
            var receiver = new PatchCell(input switch { PathInput.Q => PatchSite.Q, PathInput.K => PatchSite.K, _ => PatchSite.V }, Layer, Head);
            var recorded = new float[B * T * c.NHeads * c.DHead];

            // 1. senders clean, every other component below the receiver frozen at its corrupted value; record the receiver's input
            var handles = new List<IDisposable>();
            try
            {
                bool embedSends = senders.Any(s => s.Kind == PathSenderKind.Embeddings);
                foreach (var n in new[] { "hook_embed", "hook_pos_embed" })
                {
                    var from = (embedSends ? CleanCache : CorruptedCache)[n];
                    handles.Add(M.Hooks.AddForward(n, (t, _) => from.Span.CopyTo(t.Span)));
                }
                for (int l = 0; l < Layer; l++)
                {
                    int layer = l;
                    var cleanZ = CleanCache[$"blocks.{l}.attn.hook_z"];
                    var frozenZ = CorruptedCache[$"blocks.{l}.attn.hook_z"];
                    var sendingHeads = senders.Where(s => s.Kind == PathSenderKind.Head && s.Layer == l).Select(s => s.Head).ToHashSet();
                    handles.Add(M.Hooks.AddForward($"blocks.{l}.attn.hook_z", (t, hp) =>
                    {
                        frozenZ.Span.CopyTo(t.Span);
                        foreach (int h in sendingHeads)
                            foreach (var (at, n) in ActivationPatching.Runs(new PatchCell(PatchSite.Z, layer, h), c, hp.Batch, hp.SeqLen))
                                cleanZ.Span.Slice(at, n).CopyTo(t.Span.Slice(at, n));
                    }));
                    if (c.HasMlp)
                    {
                        bool sends = senders.Any(s => s.Kind == PathSenderKind.Mlp && s.Layer == l);
                        var from = (sends ? CleanCache : CorruptedCache)[$"blocks.{l}.hook_mlp_out"];
                        handles.Add(M.Hooks.AddForward($"blocks.{l}.hook_mlp_out", (t, _) => from.Span.CopyTo(t.Span)));
                    }
                }
                handles.Add(M.Hooks.AddForward(receiverHook, (t, _) => t.Span.CopyTo(recorded)));
                M.Forward(P.Corrupted, default, B, T);
            }
            finally { foreach (var h in handles) h.Dispose(); }

            // 2. only the receiver's input patched, everything after it free
            using (M.Hooks.AddForward(receiverHook, (t, hp) =>
                   {
                       foreach (var (at, n) in ActivationPatching.Runs(receiver, c, hp.Batch, hp.SeqLen)) recorded.AsSpan(at, n).CopyTo(t.Span.Slice(at, n));
                   }))
                return ActivationPatching.Metric(M, P.Corrupted, P, Metric);
        }
    }
}

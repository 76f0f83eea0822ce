using CommunityToolkit.HighPerformance;
using MiniGpt.Generation;
using MiniGpt.Layers;
using MiniGpt.Model;
using MiniGpt.Tensors;
using MiniGpt.Training;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// The one switch to the reference kernels (MINIGPT_KERNELS=scalar, or a model made with Kernels.Reference) reaches every
/// operation: a training step's forward, backward and AdamW update, each attention path, and cached generation ask the
/// model's kernel set for every op they run, so the set a model holds is the only code that runs. A recording set around
/// Kernels.Reference sees each op and changes no bit.
/// </summary>
public class KernelSwitchTests
{
    [Fact]
    public void EveryOpOfATrainingStepAndOfGenerationRunsThroughTheModelsKernelSet()
    {
        string dir = TestPaths.TempDir("kernels");
        var o = new TrainOptions
        {
            Data = "induction", Model = new() { NLayers = 2, DModel = 32, NHeads = 2, NCtx = 16, AttnOnly = false }, BatchSize = 4, Steps = 3, WarmupSteps = 1,
            EvalInterval = 100, EvalBatches = 1, LogInterval = 100, CheckpointInterval = 1000, Out = Path.Combine(dir, "m.safetensors"), Seed = 7,
        };
        var rec = new RecordingKernels(Kernels.Reference);
        var t = Trainer.Start(o, rec);
        var reference = Trainer.Start(o, Kernels.Reference);
        Assert.Same(rec, t.Model.Kernels);
        for (int i = 0; i < 2; i++) Assert.Equal(reference.Step(), t.Step()); // the pattern kept for speed (n_ctx 16)
        Assert.Equal(reference.Model.Params.Buffer, t.Model.Params.Buffer);
        string[] step =
        [
            "MatMul.NN+bias", "MatMul.TN", "MatMul.NT", "SumRows", "Add", "LayerNormForward", "LayerNormBackward", "GeluForward", "GeluBackward",
            "CrossEntropyForward", "CrossEntropyBackward", "ProjectQkv", "ProjectQkvBackward", "HeadsTiled", "HeadsBackward", "AdamW",
        ];
        foreach (var op in step) Assert.True(rec.Calls.Contains(op), $"a training step did not ask the model's kernel set for {op}: it ran other code");

        // the fully tiled path (backward recomputes the pattern) and the materialised one (a hook on the pattern)
        t.Model.KeepPatternsForSpeed = false;
        t.Step();
        Assert.Contains("HeadsTiledBackward", rec.Calls);
        using (t.Model.Hooks.AddForward("blocks.0.attn.hook_pattern", (_, _) => { })) t.Step();
        Assert.Contains("Heads", rec.Calls);

        // cached generation: GEMVs of the same set
        var g = new Generator(t.Model);
        var output = new int[4];
        g.Generate([1, 2, 3], output, _ => 0);
        Assert.Contains("Gemv", rec.Calls);
        Directory.Delete(dir, true);
    }

    /// <summary>An SAE trainer runs its step, AdamW included, on the kernel set it was given.</summary>
    [Fact]
    public void AnSaeTrainingStepRunsThroughItsKernelSet()
    {
        var m = GptModel.Create(new ModelConfig { NLayers = 1, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 12, DVocab = 20 }, 2);
        var o = new Sae.SaeTrainOptions { Hook = "blocks.0.hook_resid_post", DSae = 32, Steps = 3, BatchRows = 16, BufferRows = 256, WindowsPerRefill = 4, LogInterval = 100 };
        var rec = new RecordingKernels(Kernels.Reference);
        new Sae.SaeTrainer(m, new Data.InductionTask(20, 12, 3), o, rec).Run();
        Assert.Contains("AdamW", rec.Calls);
        Assert.Contains("MatMul.NN", rec.Calls);
    }

    /// <summary>Kernels.Reference with every member recorded by name (the matmul's forms too).</summary>
    private sealed class RecordingKernels(IKernels inner) : IKernels
    {
        public readonly HashSet<string> Calls = new();
        private void Note(string op) { lock (Calls) Calls.Add(op); }

        public string Name => "recording " + inner.Name;
        public IMatMul MatMul => new RecordingMatMul(inner.MatMul, Note);

        public void AddBias(Span<float> y, ReadOnlySpan<float> b, int N, int O) { Note(nameof(AddBias)); inner.AddBias(y, b, N, O); }
        public void SumRows(ReadOnlySpan<float> m, Span<float> acc, int N, int C) { Note(nameof(SumRows)); inner.SumRows(m, acc, N, C); }
        public void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst) { Note(nameof(Add)); inner.Add(a, b, dst); }
        public void LayerNormForward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, Span<float> mean, Span<float> rstd, int N, int C)
        { Note(nameof(LayerNormForward)); inner.LayerNormForward(x, w, b, y, mean, rstd, N, C); }
        public void LayerNormBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd,
            ReadOnlySpan<float> dy, Span<float> dx, Span<float> dw, Span<float> db, Span<float> xhat, Span<float> g, int N, int C)
        { Note(nameof(LayerNormBackward)); inner.LayerNormBackward(x, w, mean, rstd, dy, dx, dw, db, xhat, g, N, C); }
        public void GeluForward(ReadOnlySpan<float> x, Span<float> y) { Note(nameof(GeluForward)); inner.GeluForward(x, y); }
        public void GeluBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, Span<float> tScratch, bool accumulate)
        { Note(nameof(GeluBackward)); inner.GeluBackward(x, dy, dx, tScratch, accumulate); }
        public double CrossEntropyForward(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> losses, int N, int V)
        { Note(nameof(CrossEntropyForward)); return inner.CrossEntropyForward(logits, targets, losses, N, V); }
        public void CrossEntropyBackward(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> dLogits, float scale, int N, int V)
        { Note(nameof(CrossEntropyBackward)); inner.CrossEntropyBackward(logits, targets, dLogits, scale, N, V); }
        public void ProjectQkv(ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Attention.Weights w, Span<float> q, Span<float> k, Span<float> v, int B, int T, int D, int H, int dh)
        { Note(nameof(ProjectQkv)); inner.ProjectQkv(xqk, xv, w, q, k, v, B, T, D, H, dh); }
        public void ProjectQkvBackward(ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Attention.Weights w, in Attention.Grads g,
            ReadOnlySpan<float> dq, ReadOnlySpan<float> dk, ReadOnlySpan<float> dv, Span<float> dxqk, Span<float> dxv, int N, int D, int H, int dh)
        { Note(nameof(ProjectQkvBackward)); inner.ProjectQkvBackward(xqk, xv, w, g, dq, dk, dv, dxqk, dxv, N, D, H, dh); }
        public void Heads(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> scores, Span<float> pattern, Span<float> z, int B, int T, int H, int dh, HeadStages stages)
        { Note(nameof(Heads)); inner.Heads(q, k, v, scores, pattern, z, B, T, H, dh, stages); }
        public void HeadsBackward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> pattern, ReadOnlySpan<float> dz,
            Span<float> dq, Span<float> dk, Span<float> dv, Span<float> dPattern, Span<float> dScores, int B, int T, int H, int dh, HeadStages stages)
        { Note(nameof(HeadsBackward)); inner.HeadsBackward(q, k, v, pattern, dz, dq, dk, dv, dPattern, dScores, B, T, H, dh, stages); }
        public void HeadsTiled(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> z, Span<float> softmaxMax, Span<float> softmaxSum,
            int B, int T, int H, int dh, Span<float> pattern = default)
        { Note(nameof(HeadsTiled)); inner.HeadsTiled(q, k, v, z, softmaxMax, softmaxSum, B, T, H, dh, pattern); }
        public void HeadsTiledBackward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> softmaxMax, ReadOnlySpan<float> softmaxSum,
            ReadOnlySpan<float> dz, Span<float> dq, Span<float> dk, Span<float> dv, int B, int T, int H, int dh)
        { Note(nameof(HeadsTiledBackward)); inner.HeadsTiledBackward(q, k, v, softmaxMax, softmaxSum, dz, dq, dk, dv, B, T, H, dh); }
        public void Gemv(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, int G, int I, int O)
        { Note(nameof(Gemv)); inner.Gemv(x, w, b, y, G, I, O); }
        public void AdamW(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, ReadOnlySpan<ParamSegment> segments, in AdamWStep step)
        { Note(nameof(AdamW)); inner.AdamW(p, g, m, v, segments, step); }
    }

    private sealed class RecordingMatMul(IMatMul inner, Action<string> note) : IMatMul
    {
        public void NN(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate) { note("MatMul.NN"); inner.NN(a, b, c, accumulate); }
        public void NN(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, ReadOnlySpan<float> bias, Span2D<float> c) { note("MatMul.NN+bias"); inner.NN(a, b, bias, c); }
        public void NT(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate) { note("MatMul.NT"); inner.NT(a, b, c, accumulate); }
        public void TN(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate) { note("MatMul.TN"); inner.TN(a, b, c, accumulate); }
    }
}

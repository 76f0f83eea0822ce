using MiniGpt.Data;
using MiniGpt.Layers;
using MiniGpt.Model;
using MiniGpt.Sae;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>Sparse autoencoders: gradients against finite differences, kernels against the scalar reference, metrics against direct computation.</summary>
public class SaeTests
{
    private static SparseAutoencoder RandomSae(SaeArchitecture arch, int dIn = 6, int dSae = 10, int k = 3, IKernels? kernels = null, ulong seed = 5)
    {
        var sae = new SparseAutoencoder(new SaeConfig { DIn = dIn, DSae = dSae, Architecture = arch, K = k, HookName = "blocks.0.hook_resid_post" }, kernels ?? Kernels.Reference);
        sae.Initialise(seed, 0.5f);
        var rng = new Rng(seed + 1);
        // biases and an encoder that is not the decoder's transpose, so every term of the gradient is exercised
        for (int i = 0; i < sae.Parameters.Length; i++) sae.Parameters[i] += 0.3f * (float)rng.NextNormal();
        return sae;
    }

    private static float[] RandomRows(int n, int d, ulong seed)
    {
        var rng = new Rng(seed);
        var x = new float[n * d];
        for (int i = 0; i < x.Length; i++) x[i] = (float)rng.NextNormal();
        return x;
    }

    [Theory]
    [InlineData(SaeArchitecture.Relu)]
    [InlineData(SaeArchitecture.TopK)]
    public void BackwardIsTheFiniteDifferenceOfTheLoss(SaeArchitecture arch)
    {
        const int N = 7;
        const float l1 = 0.7f;
        var sae = RandomSae(arch);
        var c = sae.Config;
        var x = RandomRows(N, c.DIn, 9);
        var a = new SaeActivations(c, N);
        double LossAt()
        {
            sae.Forward(x, N, a);
            return sae.Loss(x, N, a, l1).Total;
        }
        LossAt();
        sae.Backward(x, N, a, l1);
        var analytic = (float[])sae.Gradients.Clone();
        int checkedCount = 0;
        for (int i = 0; i < sae.Parameters.Length; i++)
        {
            float p = sae.Parameters[i];
            const float eps = 1e-3f;
            sae.Parameters[i] = p + eps; double up = LossAt();
            sae.Parameters[i] = p - eps; double down = LossAt();
            sae.Parameters[i] = p;
            double numeric = (up - down) / (2 * eps);
            // TopK's selection and ReLU's kink make the loss piecewise smooth: skip the few parameters whose step crosses a kink
            double oneSided = (up - LossAt()) / eps;
            if (Math.Abs(oneSided - numeric) > 0.05 * (1 + Math.Abs(numeric))) continue;
            Assert.True(Math.Abs(analytic[i] - numeric) <= 2e-3 + 2e-2 * Math.Abs(numeric), $"{arch} parameter {i}: backward {analytic[i]}, finite difference {numeric}");
            checkedCount++;
        }
        Assert.True(checkedCount > 0.9 * sae.Parameters.Length, $"only {checkedCount} of {sae.Parameters.Length} parameters were smooth enough to check");
    }

    [Theory]
    [InlineData(SaeArchitecture.Relu)]
    [InlineData(SaeArchitecture.TopK)]
    public void FastKernelsComputeWhatTheScalarReferenceComputes(SaeArchitecture arch)
    {
        const int N = 33;
        var slow = RandomSae(arch, dIn: 40, dSae: 96, k: 8, kernels: Kernels.Reference);
        var fast = RandomSae(arch, dIn: 40, dSae: 96, k: 8, kernels: Kernels.Fast);
        var x = RandomRows(N, 40, 3);
        var a = new SaeActivations(slow.Config, N);
        var b = new SaeActivations(fast.Config, N);
        slow.Forward(x, N, a); fast.Forward(x, N, b);
        slow.Backward(x, N, a, 0.5f); fast.Backward(x, N, b, 0.5f);
        for (int i = 0; i < a.Reconstruction.Length; i++) Assert.True(Math.Abs(a.Reconstruction[i] - b.Reconstruction[i]) < 1e-4, $"x̂[{i}]");
        for (int i = 0; i < slow.Gradients.Length; i++)
            Assert.True(Math.Abs(slow.Gradients[i] - fast.Gradients[i]) < 1e-4 * (1 + Math.Abs(slow.Gradients[i])), $"gradient {i}: {slow.Gradients[i]} vs {fast.Gradients[i]}");
    }

    [Fact]
    public void TopKKeepsTheKLargestPreActivationsOfEachRow()
    {
        const int N = 50, S = 37, k = 5;
        var pre = RandomRows(N, S, 4);
        pre[3] = pre[4]; // a tie
        var f = new float[N * S];
        SparseAutoencoder.TopKRelu(pre, f, N, S, k, new float[S]);
        for (int n = 0; n < N; n++)
        {
            var row = pre.AsSpan(n * S, S).ToArray();
            // the reference: indices by value descending, then index ascending, the first k, ReLU'd
            var keep = Enumerable.Range(0, S).OrderByDescending(i => row[i]).ThenBy(i => i).Take(k).ToHashSet();
            for (int i = 0; i < S; i++)
                Assert.Equal(keep.Contains(i) ? Math.Max(row[i], 0) : 0, f[n * S + i]);
        }
    }

    private static GptModel Model(ulong seed = 2) =>
        GptModel.Create(new ModelConfig { NLayers = 1, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 12, DVocab = 20 }, seed);

    private static List<EvalBatch> Batches(ModelConfig c, int count = 2, int B = 3)
    {
        var task = new InductionTask(c.DVocab, c.NCtx, 7);
        return task.ValidationWindows(B * count, B, c.NCtx).ToList();
    }

    [Fact]
    public void MetricsAreTheirDirectComputation()
    {
        var m = Model();
        var batches = Batches(m.Config);
        string hook = "blocks.0.hook_resid_post";
        int d = m.Config.DModel;
        var sae = new SparseAutoencoder(new SaeConfig { DIn = d, DSae = 40, HookName = hook }, Kernels.Reference);
        sae.Initialise(3, 0.4f);
        var r = SaeEvaluation.Run(m, sae, batches);

        // direct: the activations by RunWithCache, the SAE by plain loops
        double se = 0, l0 = 0;
        var sum = new double[d];
        double sq = 0;
        long n = 0;
        var fired = new int[40];
        foreach (var b in batches)
        {
            int T = m.Config.NCtx, B = b.Inputs.Length / T;
            var act = m.RunWithCache(b.Inputs, B, T, name => name == hook)[hook].Span.ToArray();
            for (int row = 0; row < B * T; row++)
            {
                var x = act.AsSpan(row * d, d);
                var f = new double[40];
                for (int i = 0; i < 40; i++)
                {
                    double pre = sae.BEnc[i];
                    for (int j = 0; j < d; j++) pre += (x[j] - sae.BDec[j]) * sae.WEnc[j * 40 + i];
                    f[i] = Math.Max(pre, 0);
                    if (f[i] > 0) { l0++; fired[i]++; }
                }
                for (int j = 0; j < d; j++)
                {
                    double xhat = sae.BDec[j];
                    for (int i = 0; i < 40; i++) xhat += f[i] * sae.WDec[i * d + j];
                    se += (xhat - x[j]) * (xhat - x[j]);
                    sum[j] += x[j]; sq += x[j] * x[j];
                }
                n++;
            }
        }
        double variance = sq - sum.Sum(v => v * v) / n;
        Assert.Equal(n, r.Tokens);
        Assert.Equal(l0 / n, r.L0, 6);
        Assert.Equal(se / n, r.Mse, 3);
        Assert.Equal(1 - se / variance, r.ExplainedVariance, 4);
        for (int i = 0; i < 40; i++) Assert.Equal((double)fired[i] / n, r.Frequency[i], 9);
        Assert.Equal(fired.Count(c => c == 0), r.Dead);
        double clean = batches.Sum(b => (double)m.Forward(b.Inputs, b.Targets, b.Inputs.Length / m.Config.NCtx, m.Config.NCtx) * b.Inputs.Length) / n;
        Assert.Equal(clean, r.LossClean, 6);
    }

    [Fact]
    public void LossRecoveredIsOneForAPerfectReconstructionAndZeroForNone()
    {
        var m = Model();
        var batches = Batches(m.Config);
        string hook = "blocks.0.hook_resid_mid"; // zeroing it changes the loss even at random init
        int d = m.Config.DModel;
        // f = [ReLU(x), ReLU(−x)], x̂ = ReLU(x) − ReLU(−x) = x: a perfect reconstruction
        var perfect = new SparseAutoencoder(new SaeConfig { DIn = d, DSae = 2 * d, HookName = hook }, Kernels.Reference);
        for (int j = 0; j < d; j++)
        {
            perfect.WEnc[j * 2 * d + j] = 1; perfect.WEnc[j * 2 * d + d + j] = -1;
            perfect.WDec[j * d + j] = 1; perfect.WDec[(d + j) * d + j] = -1;
        }
        var p = SaeEvaluation.Run(m, perfect, batches);
        Assert.Equal(1.0, p.LossRecovered, 5);
        Assert.Equal(1.0, p.ExplainedVariance, 5);
        Assert.True(Math.Abs(p.LossZero - p.LossClean) > 1e-3, $"zero-ablating {hook} changes nothing ({p.LossClean} → {p.LossZero}, sae {p.LossSae}), so the test says nothing");

        var zero = new SparseAutoencoder(new SaeConfig { DIn = d, DSae = 8, HookName = hook }, Kernels.Reference); // all weights 0: x̂ = 0
        var z = SaeEvaluation.Run(m, zero, batches);
        Assert.Equal(0.0, z.LossRecovered, 9);
        Assert.Equal(p.LossClean, z.LossClean, 9);
        Assert.Equal(p.LossZero, z.LossZero, 9);
        Assert.Equal(0.0, z.L0);
        Assert.Equal(8, z.Dead);
    }

    [Fact]
    public void ARescaledSaeReadsRawActivationsAsTheOriginalReadsScaledOnes()
    {
        var sae = RandomSae(SaeArchitecture.Relu);
        const float scale = 2.5f;
        var raw = sae.Rescaled(scale);
        var x = RandomRows(4, 6, 1);
        var xs = x.Select(v => v * scale).ToArray();
        var a = new SaeActivations(sae.Config, 4);
        var b = new SaeActivations(sae.Config, 4);
        sae.Forward(xs, 4, a);
        raw.Forward(x, 4, b);
        for (int i = 0; i < a.Features.Length; i++) Assert.Equal(a.Features[i], b.Features[i], 4);
        for (int i = 0; i < a.Reconstruction.Length; i++) Assert.Equal(a.Reconstruction[i] / scale, b.Reconstruction[i], 4);
    }

    [Fact]
    public void SavedSaeLoadsBackInSaeLensLayout()
    {
        string dir = TestPaths.TempDir("sae-file");
        var sae = RandomSae(SaeArchitecture.TopK, dIn: 6, dSae: 10, k: 3);
        SaeFile.Save(dir, sae, "m");
        var back = SaeFile.Load(dir);
        Assert.Equal(sae.Parameters, back.Parameters);
        Assert.Equal(SaeArchitecture.TopK, back.Config.Architecture);
        Assert.Equal(3, back.Config.K);
        var file = Checkpoints.SafeTensorsFile.Open(Path.Combine(dir, SaeFile.WeightsName));
        Assert.Equal(new[] { 6, 10 }, file.Entries["W_enc"].Shape);
        Assert.Equal(new[] { 10, 6 }, file.Entries["W_dec"].Shape);
        string cfg = File.ReadAllText(Path.Combine(dir, SaeFile.ConfigName));
        Assert.Contains("\"hook_name\": \"blocks.0.hook_resid_post\"", cfg);
        Assert.Contains("\"architecture\": \"topk\"", cfg);
        Assert.Contains("already", Assert.Throws<UserError>(() => SaeFile.Load(Path.Combine(dir, "none"))).Message.Replace("does not exist", "already"));
        Directory.Delete(dir, true);
    }

    [Fact]
    public void TrainingLowersTheErrorAndIsDeterministicForAnyThreadCount()
    {
        var m = Model();
        var data = new InductionTask(m.Config.DVocab, m.Config.NCtx, 3);
        var o = new SaeTrainOptions { Hook = "blocks.0.hook_resid_post", DSae = 64, Architecture = SaeArchitecture.Relu, Steps = 300, BatchRows = 128, BufferRows = 2048, WindowsPerRefill = 8, L1Coefficient = 1f, LogInterval = 50 };
        var t = new SaeTrainer(m, data, o);
        t.Run();
        Assert.True(t.History[^1].ExplainedVariance > 0.6, $"explained variance {t.History[^1].ExplainedVariance:0.000} after 300 steps");
        Assert.True(t.History[^1].Mse < 0.5 * t.History[0].Mse, $"mse {t.History[0].Mse:0.000} → {t.History[^1].Mse:0.000}");

        float[] Train(int threads)
        {
            using var pool = new Tensors.WorkerPool(threads);
            Tensors.WorkerPool.UseOnThisThread(pool);
            try
            {
                var tt = new SaeTrainer(Model(), new InductionTask(m.Config.DVocab, m.Config.NCtx, 3), o with { Steps = 60 }, Kernels.Fast);
                tt.Run();
                return tt.Result().Parameters;
            }
            finally { Tensors.WorkerPool.UseOnThisThread(null); }
        }
        Assert.Equal(Train(1), Train(2));
    }

    [Fact]
    public void GeometryOfAnOrthonormalDictionaryIsExactAndRandomDirectionsSpreadAsOneOverRootD()
    {
        const int d = 16;
        var sae = new SparseAutoencoder(new SaeConfig { DIn = d, DSae = d, HookName = "h" }, Kernels.Reference);
        for (int i = 0; i < d; i++) sae.WDec[i * d + i] = 3f; // orthogonal rows of norm 3: unit directions after normalising
        var g = SaeGeometry.Measure(sae);
        Assert.Equal(0.0, g.Decoder.Mean, 9);
        Assert.Equal(0.0, g.Decoder.Std, 9);
        Assert.Equal(0.0, g.DecoderMaxAbsCos, 9);
        // Z = I_d (n = d unit rows): R = ½ logdet(I + d/(n ε²) I) = (d/2) ln(1 + 1/ε²), ε = 0.5
        Assert.Equal(d / 2.0 * Math.Log(1 + 4), g.DecoderCodingRate, 6);
        // d random directions: cosines centred on 0 with spread near 1/√d, nearest neighbours well above 0
        Assert.InRange(g.Random.Mean, -0.05, 0.05);
        Assert.InRange(g.Random.Std / g.Random.ExpectedStd, 0.8, 1.2);
        Assert.True(g.RandomMaxAbsCos > 0.3, $"random nearest |cos| {g.RandomMaxAbsCos}");
        Assert.True(g.RandomCodingRate < g.DecoderCodingRate, "random directions code in fewer nats than orthonormal ones");
        // no live feature (an L1 penalty that killed them all): no pairs, NaN statistics instead of an exception
        var none = SaeGeometry.Measure(sae, alive: []);
        Assert.Equal(0, none.Features);
        Assert.True(double.IsNaN(none.Decoder.Mean) && double.IsNaN(none.DecoderCodingRate));
    }

    [Fact]
    public void ATrainingStepAllocatesNothing()
    {
        var m = Model();
        // a buffer that holds every step below: no refill (the only allocation, its hook's registration) falls among them
        var o = new SaeTrainOptions { Hook = "blocks.0.hook_resid_post", DSae = 64, Steps = 100, BatchRows = 32, BufferRows = 8192, WindowsPerRefill = 8 };
        var t = new SaeTrainer(m, new InductionTask(m.Config.DVocab, m.Config.NCtx, 3), o, Kernels.Fast);
        for (int i = 0; i < 40; i++) t.TrainStep(); // warm-up past the runtime's tiering threshold (30 calls), as PrepareTests does
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 50; i++) t.TrainStep();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

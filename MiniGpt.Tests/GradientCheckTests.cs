using MiniGpt.Model;
using MiniGpt.Tensors;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// Finite-difference checks of the whole model's hand-written backward. For each parameter tensor we
/// take a random direction u inside that tensor and compare the directional derivative g·u with the
/// central difference (L(θ+εu) − L(θ−εu)) / 2ε. The loss is summed in double, so with ε = 1e-3 the
/// float32 rounding error of the difference is ~1e-4 relative; a wrong gradient is off by O(1).
/// </summary>
public class GradientCheckTests
{
    public static TheoryData<int, bool, string, bool> Configs()
    {
        var d = new TheoryData<int, bool, string, bool>();
        foreach (int layers in new[] { 0, 1, 2 })
            foreach (bool attnOnly in new[] { true, false })
                foreach (string norm in new[] { "LN", "none" })
                {
                    if (layers == 0 && !attnOnly) continue; // a zero-layer model has no MLP either way
                    d.Add(layers, attnOnly, norm, false);
                }
        d.Add(2, true, "LN", true);
        d.Add(1, false, "none", true);
        d.Add(2, false, "LNPre", false);
        return d;
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void WholeModelGradientsMatchFiniteDifferences(int layers, bool attnOnly, string normalization, bool shortformer)
    {
        var cfg = new ModelConfig
        {
            NLayers = layers, DModel = 16, NHeads = 2, DHead = 8, DMlp = 24, NCtx = 6, DVocab = 11,
            AttnOnly = attnOnly, NormalizationType = normalization == "none" ? null : normalization,
            PositionalEmbeddingType = shortformer ? "shortformer" : "standard", InitRange = 0.3,
        };
        var model = GptModel.Create(cfg, seed: 7);
        // perturb biases and gains away from 0/1 so their gradients are exercised in general position
        var rng = new Rng(99);
        foreach (var t in model.Params.Tensors)
            if (!t.Name.Contains(".W_"))
                for (int i = 0; i < t.Length; i++) t[i] += (float)(0.1 * rng.NextNormal());
        const int B = 2, T = 5;
        var tokens = new int[B * T];
        var targets = new int[B * T];
        for (int i = 0; i < tokens.Length; i++) { tokens[i] = rng.NextInt(cfg.DVocab); targets[i] = rng.NextInt(cfg.DVocab); }

        double Loss()
        {
            model.Forward(tokens, targets, B, T);
            double s = 0;
            foreach (float l in model.Losses) s += l;
            return s / (B * T);
        }

        Loss();
        model.ZeroGrad();
        model.Backward(1f / (B * T));
        var grads = (float[])model.Grads.Buffer.Clone();

        const float eps = 1e-3f;
        foreach (var p in model.Params.Tensors)
        {
            var u = new float[p.Length];
            double norm = 0;
            for (int i = 0; i < u.Length; i++) { u[i] = (float)rng.NextNormal(); norm += u[i] * u[i]; }
            for (int i = 0; i < u.Length; i++) u[i] /= (float)Math.Sqrt(norm);
            double analytic = 0;
            for (int i = 0; i < u.Length; i++) analytic += grads[p.Offset + i] * (double)u[i];
            var saved = p.Span.ToArray();
            for (int i = 0; i < u.Length; i++) p[i] = saved[i] + eps * u[i];
            double lp = Loss();
            for (int i = 0; i < u.Length; i++) p[i] = saved[i] - eps * u[i];
            double lm = Loss();
            saved.CopyTo(p.Span);
            double numeric = (lp - lm) / (2 * eps);
            double tol = 2e-3 * Math.Max(1.0, Math.Abs(numeric)) + 5e-4;
            Assert.True(Math.Abs(numeric - analytic) <= tol,
                $"{p.Name}: finite difference {numeric:G6} vs backward {analytic:G6}");
        }
    }
}

using MiniGpt.Layers;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// Finite-difference checks of every layer's Backward, one layer at a time. For a layer y = f(θ) and a
/// random upstream gradient r we define L(θ) = Σ r·y (summed in double) and, for each input and
/// parameter span, compare the analytic directional derivative Σ grad·u with the central difference
/// (L(θ+εu) − L(θ−εu)) / 2ε along random unit directions u (and along the analytic gradient itself).
/// With r scaled to std 2/√len, the tolerance 2e-3·max(1, |numeric|) + 5e-4 is ≥ 5× the float32 rounding
/// noise of the difference (measured: worst error 0.18 of the tolerance), while a gradient off by just 1%
/// already exceeds it in about half the directions, so a dropped or wrong term (≥ 10%) cannot pass.
/// Backward is also run twice, into zeroed buffers and into pre-filled ones, to pin down which
/// outputs accumulate and which overwrite, and to show scratch buffers (filled with NaN) are never read.
/// </summary>
public class LayerGradientTests
{
    private const double Eps = 1e-3;

    /// <summary>Every layer is checked with both kernel sets: the readable reference and the fast kernels the model runs by default.</summary>
    private static readonly IKernels[] BothSets = [Kernels.Reference, Kernels.Fast];

    // ---------------------------------------------------------------- helpers

    private static float[] Normal(ref Rng rng, int n, double std = 1, double mean = 0)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(mean + std * rng.NextNormal());
        return a;
    }

    /// <summary>
    /// The upstream gradient r, with std 2/√len so that the float32 rounding noise of Σ r·y (which grows
    /// as √len·|r|) stays near 1e-4 in the finite difference whatever the output size, 20× under the
    /// tolerance, while a 1% error in a gradient still shows in most directions.
    /// </summary>
    private static float[] Upstream(ref Rng rng, int len) => Normal(ref rng, len, std: 2 / Math.Sqrt(len));

    private static float[] NaNs(int n)
    {
        var a = new float[n];
        Array.Fill(a, float.NaN);
        return a;
    }

    private static double Dot(float[] r, float[] y)
    {
        Assert.Equal(r.Length, y.Length);
        double s = 0;
        for (int i = 0; i < r.Length; i++) s += (double)r[i] * y[i];
        return s;
    }

    /// <summary>
    /// Compares grad (dL/dθ from Backward) with central differences of loss along four unit directions:
    /// three random, one along grad. θ is perturbed in place and restored.
    /// </summary>
    private static void CheckGradient(string name, float[] theta, float[] grad, Func<double> loss, ref Rng rng)
    {
        Assert.Equal(theta.Length, grad.Length);
        for (int i = 0; i < grad.Length; i++)
            if (!float.IsFinite(grad[i])) Assert.Fail($"{name}[{i}] = {grad[i]}");
        var saved = (float[])theta.Clone();
        var plus = new float[theta.Length];
        var minus = new float[theta.Length];
        for (int d = 0; d < 4; d++)
        {
            var u = d < 3 ? Normal(ref rng, theta.Length) : (float[])grad.Clone();
            double norm = 0;
            foreach (float x in u) norm += (double)x * x;
            if (norm == 0) continue; // a zero gradient: the random directions already checked it is zero
            norm = Math.Sqrt(norm);
            for (int i = 0; i < u.Length; i++)
            {
                plus[i] = (float)(saved[i] + Eps * u[i] / norm);
                minus[i] = (float)(saved[i] - Eps * u[i] / norm);
            }
            // the derivative along the step actually taken (θ± rounded to float), so rounding of θ± is no error
            double analytic = 0;
            for (int i = 0; i < u.Length; i++) analytic += grad[i] * ((double)plus[i] - minus[i]);
            analytic /= 2 * Eps;
            plus.CopyTo(theta);
            double lp = loss();
            minus.CopyTo(theta);
            double lm = loss();
            saved.CopyTo(theta);
            double numeric = (lp - lm) / (2 * Eps);
            double tol = 2e-3 * Math.Max(1.0, Math.Abs(numeric)) + 5e-4;
            if (!(Math.Abs(numeric - analytic) <= tol))
                Assert.Fail($"{name} (direction {d}): finite difference {numeric:G7} vs backward {analytic:G7} (tolerance {tol:G3})");
        }
    }

    /// <summary>
    /// Runs backward twice: into zeroed gradient buffers (the result, returned, is the gradient) and into
    /// buffers pre-filled with noise (outputs that accumulate) or NaN (outputs that overwrite). An
    /// accumulating output must then hold noise + gradient, an overwriting one the gradient bit for bit.
    /// </summary>
    private static float[][] RunBackward(ref Rng rng, (string Name, int Length, bool Accumulates)[] outputs, Action<float[][]> backward)
    {
        var zero = outputs.Select(o => new float[o.Length]).ToArray();
        backward(zero);
        var pre = new float[outputs.Length][];
        for (int i = 0; i < outputs.Length; i++)
            pre[i] = outputs[i].Accumulates ? Normal(ref rng, outputs[i].Length) : NaNs(outputs[i].Length);
        var again = pre.Select(p => (float[])p.Clone()).ToArray();
        backward(again);
        for (int o = 0; o < outputs.Length; o++)
            for (int i = 0; i < outputs[o].Length; i++)
            {
                float g = zero[o][i], got = again[o][i];
                if (outputs[o].Accumulates)
                {
                    float p = pre[o][i];
                    if (!(Math.Abs(got - (p + (double)g)) <= 1e-5 * (Math.Abs(p) + Math.Abs(g)) + 1e-6))
                        Assert.Fail($"{outputs[o].Name}[{i}] should accumulate: was {p}, gradient {g}, got {got}");
                }
                else if (BitConverter.SingleToInt32Bits(got) != BitConverter.SingleToInt32Bits(g))
                    Assert.Fail($"{outputs[o].Name}[{i}] should be overwritten: gradient {g}, got {got} over a NaN-filled buffer");
            }
        return zero;
    }

    // ---------------------------------------------------------------- Embedding

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void EmbeddingBackwardMatchesFiniteDifferences(bool addPos)
    {
        const int B = 3, T = 5, D = 6, V = 9, NCtx = 7; // W_pos has rows past T that must get no gradient
        var rng = new Rng(addPos ? 11UL : 12UL);
        var tokens = new int[B * T];
        for (int i = 0; i < tokens.Length; i++) tokens[i] = rng.NextInt(V);
        tokens[7] = tokens[1]; tokens[12] = tokens[1]; // a token used three times: its gradient rows must add up
        var wE = Normal(ref rng, V * D);
        var wPos = Normal(ref rng, NCtx * D);
        var r = Upstream(ref rng, B * T * D);
        var rPos = Upstream(ref rng, B * T * D);
        var embed = new float[B * T * D];
        var pos = new float[B * T * D];

        // the model adds embed and pos (or, with shortformer positions, uses pos elsewhere): each has its own upstream gradient
        double Loss()
        {
            Embedding.Forward(tokens, wE, wPos, embed, pos, B, T, D);
            return Dot(r, embed) + (addPos ? Dot(rPos, pos) : 0);
        }

        Loss();
        for (int n = 0; n < B * T; n++)
            for (int c = 0; c < D; c++)
            {
                Assert.Equal(wE[tokens[n] * D + c], embed[n * D + c]);
                Assert.Equal(wPos[n % T * D + c], pos[n * D + c]);
            }

        var g = RunBackward(ref rng, [("dW_E", V * D, true), ("dW_pos", NCtx * D, true)],
            gs => Embedding.Backward(tokens, r, addPos ? rPos : default, gs[0], gs[1], B, T, D));
        for (int i = addPos ? T * D : 0; i < NCtx * D; i++) Assert.Equal(0f, g[1][i]); // unused positions, or no positional gradient
        CheckGradient("dW_E", wE, g[0], Loss, ref rng);
        CheckGradient("dW_pos", wPos, g[1], Loss, ref rng);
    }

    // ---------------------------------------------------------------- LayerNorm

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(16)]
    [InlineData(33)]
    [InlineData(64)]
    public void LayerNormForwardMatchesDoublePrecision(int C)
    {
        const int N = 5;
        var rng = new Rng(20UL + (ulong)C);
        var x = Normal(ref rng, N * C, std: 2, mean: 3);
        var w = Normal(ref rng, C, std: 0.5, mean: 1);
        var b = Normal(ref rng, C, std: 0.5);
        var y = new float[N * C];
        var mean = new float[N];
        var rstd = new float[N];
        foreach (var k in BothSets)
        {
            k.LayerNormForward(x, w, b, y, mean, rstd, N, C);
            for (int n = 0; n < N; n++)
            {
                double mu = 0;
                for (int c = 0; c < C; c++) mu += x[n * C + c];
                mu /= C;
                double var = 0;
                for (int c = 0; c < C; c++) var += (x[n * C + c] - mu) * (x[n * C + c] - mu);
                var /= C; // biased
                double rs = 1 / Math.Sqrt(var + 1e-5);
                Assert.True(Math.Abs(mean[n] - mu) <= 1e-5 * Math.Max(1, Math.Abs(mu)), $"mean[{n}] {mean[n]} vs {mu}");
                Assert.True(Math.Abs(rstd[n] - rs) <= 1e-5 * rs, $"rstd[{n}] {rstd[n]} vs {rs}");
                for (int c = 0; c < C; c++)
                {
                    double expected = (x[n * C + c] - mu) * rs * w[c] + b[c];
                    if (!(Math.Abs(y[n * C + c] - expected) <= 1e-5))
                        Assert.Fail($"{k.Name}: C={C} y[{n},{c}] = {y[n * C + c]} vs {expected}");
                }
            }
        }
    }

    [Theory]
    [InlineData(6, 10)]
    [InlineData(3, 33)]
    public void LayerNormBackwardMatchesFiniteDifferences(int N, int C)
    {
        var rng = new Rng(30UL + (ulong)C);
        var x = Normal(ref rng, N * C, std: 1.5, mean: 0.7);
        var w = Normal(ref rng, C, std: 0.5, mean: 1);
        var b = Normal(ref rng, C, std: 0.3);
        var r = Upstream(ref rng, N * C);
        var y = new float[N * C];
        var mean = new float[N];
        var rstd = new float[N];
        foreach (var k in BothSets)
        {
            double Loss()
            {
                k.LayerNormForward(x, w, b, y, mean, rstd, N, C);
                return Dot(r, y);
            }

            Loss(); // mean and rstd at the unperturbed point
            var g = RunBackward(ref rng, [("dx", N * C, true), ("dw", C, true), ("db", C, true)],
                gs => k.LayerNormBackward(x, w, mean, rstd, r, gs[0], gs[1], gs[2], NaNs(C), NaNs(C), N, C));
            CheckGradient($"{k.Name} LayerNorm dx", x, g[0], Loss, ref rng);
            CheckGradient($"{k.Name} LayerNorm dw", w, g[1], Loss, ref rng);
            CheckGradient($"{k.Name} LayerNorm db", b, g[2], Loss, ref rng);
        }
    }

    // ---------------------------------------------------------------- Gelu

    [Fact]
    public void GeluForwardMatchesDoublePrecision()
    {
        var xs = new List<float> { 0f, 1e-4f, -1e-4f, 20f, -20f, 1e-30f, -1e-30f };
        for (double v = -8; v <= 8; v += 0.37) xs.Add((float)v);
        var rng = new Rng(40);
        xs.AddRange(Normal(ref rng, 41, std: 3));
        var x = xs.ToArray();
        var y = new float[x.Length];
        double c = Math.Sqrt(2 / Math.PI);
        foreach (var k in BothSets)
        {
            k.GeluForward(x, y);
            for (int i = 0; i < x.Length; i++)
            {
                double xi = x[i];
                double expected = 0.5 * xi * (1 + Math.Tanh(c * (xi + 0.044715 * xi * xi * xi)));
                if (!(Math.Abs(y[i] - expected) <= 1e-5))
                    Assert.Fail($"{k.Name}: gelu({xi}) = {y[i]} vs {expected}");
            }
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GeluBackwardMatchesFiniteDifferences(bool accumulate)
    {
        const int n = 37;
        var rng = new Rng(accumulate ? 41UL : 42UL);
        var x = Normal(ref rng, n, std: 2);
        var r = Upstream(ref rng, n);
        var y = new float[n];
        foreach (var k in BothSets)
        {
            double Loss()
            {
                k.GeluForward(x, y);
                return Dot(r, y);
            }

            var g = RunBackward(ref rng, [("dx", n, accumulate)], gs => k.GeluBackward(x, r, gs[0], NaNs(n), accumulate));
            CheckGradient($"{k.Name} Gelu dx", x, g[0], Loss, ref rng);
        }
    }

    // ---------------------------------------------------------------- Linear

    [Theory]
    [InlineData(7, 5, 9, true, false)]
    [InlineData(7, 5, 9, false, true)]
    [InlineData(4, 33, 37, true, true)]
    [InlineData(3, 40, 64, false, false)]
    public void LinearBackwardMatchesFiniteDifferences(int N, int I, int O, bool hasBias, bool accumulateDx)
    {
        var rng = new Rng((ulong)(50 + N * 1000 + I * 10 + O));
        var x = Normal(ref rng, N * I);
        var w = Normal(ref rng, I * O, std: 1 / Math.Sqrt(I));
        var b = hasBias ? Normal(ref rng, O, std: 0.5) : Array.Empty<float>();
        var r = Upstream(ref rng, N * O);
        var y = new float[N * O];
        foreach (var k in BothSets)
        {
            double Loss()
            {
                Linear.Forward(k, x, w, b, y, N, I, O);
                return Dot(r, y);
            }

            Loss();
            for (int n = 0; n < N; n++)
                for (int o = 0; o < O; o++)
                {
                    double s = hasBias ? b[o] : 0, bound = 0;
                    for (int i = 0; i < I; i++) { s += (double)x[n * I + i] * w[i * O + o]; bound += Math.Abs((double)x[n * I + i] * w[i * O + o]); }
                    if (!(Math.Abs(y[n * O + o] - s) <= 1e-5 * (bound + Math.Abs(s)) + 1e-6))
                        Assert.Fail($"y[{n},{o}] = {y[n * O + o]} vs {s}");
                }

            var g = RunBackward(ref rng, [("dx", N * I, accumulateDx), ("dW", I * O, true), ("db", b.Length, true)],
                gs => Linear.Backward(k, x, w, r, gs[0], gs[1], gs[2], N, I, O, accumulateDx));
            CheckGradient($"{k.Name} Linear dx", x, g[0], Loss, ref rng);
            CheckGradient($"{k.Name} Linear dW", w, g[1], Loss, ref rng);
            if (hasBias) CheckGradient($"{k.Name} Linear db", b, g[2], Loss, ref rng);
        }
    }

    // ---------------------------------------------------------------- Attention

    private sealed class AttentionCase
    {
        public readonly int B, T, D, H, Dh;
        public readonly float[] Xqk, Xv, WQ, WK, WV, WO, BQ, BK, BV, BO;
        public readonly float[] Q, K, V, Scores, Pattern, Max, Sum, Z, Output;

        public AttentionCase(ref Rng rng, int b, int t, int d, int h, int dh, bool sharedInput)
        {
            B = b; T = t; D = d; H = h; Dh = dh;
            int n = B * T, hd = H * dh;
            Xqk = Normal(ref rng, n * D);
            Xv = sharedInput ? Xqk : Normal(ref rng, n * D);
            WQ = Normal(ref rng, H * D * dh, std: 0.5); WK = Normal(ref rng, H * D * dh, std: 0.5);
            WV = Normal(ref rng, H * D * dh, std: 0.5); WO = Normal(ref rng, hd * D, std: 0.5);
            BQ = Normal(ref rng, hd, std: 0.3); BK = Normal(ref rng, hd, std: 0.3);
            BV = Normal(ref rng, hd, std: 0.3); BO = Normal(ref rng, D, std: 0.3);
            Q = new float[n * hd]; K = new float[n * hd]; V = new float[n * hd]; Z = new float[n * hd];
            Scores = new float[B * H * T * T]; Pattern = new float[B * H * T * T]; Max = new float[B * H * T]; Sum = new float[B * H * T];
            Output = new float[n * D];
        }

        // tiled: without the [B, H, T, T] scores and pattern (Scores and Pattern keep what an earlier pass left)
        public void Forward(IKernels k, bool tiled = false) =>
            Attention.Forward(k, Xqk, Xv, new Attention.Weights(WQ, WK, WV, WO, BQ, BK, BV, BO),
                Q, K, V, tiled ? default : Scores, tiled ? default : Pattern, Max, Sum, Z, Output, B, T, D, H, Dh);
    }

    [Theory]
    [InlineData(2, 5, 8, 2, 4, false)]
    [InlineData(2, 5, 8, 2, 4, true)]
    [InlineData(2, 4, 6, 2, 4, false)] // H·d_head ≠ D
    [InlineData(1, 1, 8, 2, 4, true)]  // a single position: the pattern is [1]
    public void AttentionBackwardMatchesFiniteDifferences(int B, int T, int D, int H, int dh, bool sameSpan)
    {
        var rng = new Rng((ulong)(60 + B * 1000 + T * 100 + D * 10 + H) + (sameSpan ? 7UL : 0UL));
        var a = new AttentionCase(ref rng, B, T, D, H, dh, sameSpan);
        var r = Upstream(ref rng, B * T * D);
        foreach (var (k, tiled) in BothSets.SelectMany(k => new[] { (k, false), (k, true) }))
        {
            double Loss()
            {
                a.Forward(k, tiled);
                return Dot(r, a.Output);
            }

            Loss(); // q, k, v, pattern (or the row statistics), z at the unperturbed point
            int nx = B * T * D, nh = B * T * H * dh, wsz = H * D * dh, hd = H * dh;
            (string, int, bool)[] outputs =
            [
                ("dx_qk", nx, true), ("dx_v", sameSpan ? 0 : nx, true),
                ("dW_Q", wsz, true), ("dW_K", wsz, true), ("dW_V", wsz, true), ("dW_O", hd * D, true),
                ("db_Q", hd, true), ("db_K", hd, true), ("db_V", hd, true), ("db_O", D, true),
            ];
            var g = RunBackward(ref rng, outputs, gs =>
            {
                var w = new Attention.Weights(a.WQ, a.WK, a.WV, a.WO, a.BQ, a.BK, a.BV, a.BO);
                var grads = new Attention.Grads(gs[2], gs[3], gs[4], gs[5], gs[6], gs[7], gs[8], gs[9]);
                Attention.Backward(k, a.Xqk, a.Xv, w, grads, a.Q, a.K, a.V, tiled ? default : a.Pattern, a.Max, a.Sum, a.Z, r,
                    NaNs(nh), NaNs(nh), NaNs(nh), NaNs(nh), gs[0], sameSpan ? gs[0] : gs[1], B, T, D, H, dh);
            });
            string n = k.Name + (tiled ? " tiled " : " ");
            if (sameSpan) CheckGradient(n + "dx (x_qk = x_v)", a.Xqk, g[0], Loss, ref rng);
            else
            {
                CheckGradient(n + "dx_qk", a.Xqk, g[0], Loss, ref rng);
                CheckGradient(n + "dx_v", a.Xv, g[1], Loss, ref rng);
            }
            CheckGradient(n + "dW_Q", a.WQ, g[2], Loss, ref rng);
            CheckGradient(n + "dW_K", a.WK, g[3], Loss, ref rng);
            CheckGradient(n + "dW_V", a.WV, g[4], Loss, ref rng);
            CheckGradient(n + "dW_O", a.WO, g[5], Loss, ref rng);
            CheckGradient(n + "db_Q", a.BQ, g[6], Loss, ref rng);
            CheckGradient(n + "db_K", a.BK, g[7], Loss, ref rng);
            CheckGradient(n + "db_V", a.BV, g[8], Loss, ref rng);
            CheckGradient(n + "db_O", a.BO, g[9], Loss, ref rng);
        }
    }

    /// <summary>The gradient checks only prove Backward matches Forward; this pins Forward itself (causal mask included).</summary>
    [Theory]
    [InlineData(2, 5, 8, 2, 4)]
    [InlineData(2, 4, 6, 2, 4)]
    public void AttentionForwardMatchesNaiveDoubleComputation(int B, int T, int D, int H, int dh)
    {
        var rng = new Rng(70);
        var a = new AttentionCase(ref rng, B, T, D, H, dh, sharedInput: false);
        foreach (var kernels in BothSets)
        {
            a.Forward(kernels);
            int hd = H * dh;
            double[] Proj(float[] x, float[] w, float[] bias, int b, int t, int h)
            {
                var o = new double[dh];
                for (int e = 0; e < dh; e++)
                {
                    double s = bias[h * dh + e];
                    for (int d = 0; d < D; d++) s += (double)x[(b * T + t) * D + d] * w[h * D * dh + d * dh + e];
                    o[e] = s;
                }
                return o;
            }
            for (int b = 0; b < B; b++)
            {
                var z = new double[T, hd];
                for (int h = 0; h < H; h++)
                {
                    var q = Enumerable.Range(0, T).Select(t => Proj(a.Xqk, a.WQ, a.BQ, b, t, h)).ToArray();
                    var k = Enumerable.Range(0, T).Select(t => Proj(a.Xqk, a.WK, a.BK, b, t, h)).ToArray();
                    var v = Enumerable.Range(0, T).Select(t => Proj(a.Xv, a.WV, a.BV, b, t, h)).ToArray();
                    for (int i = 0; i < T; i++)
                    {
                        var s = new double[i + 1];
                        for (int j = 0; j <= i; j++) s[j] = q[i].Zip(k[j], (x, y) => x * y).Sum() / Math.Sqrt(dh);
                        double max = s.Max(), sum = s.Sum(x => Math.Exp(x - max));
                        for (int j = 0; j < T; j++)
                        {
                            float got = a.Pattern[((b * H + h) * T + i) * T + j];
                            if (j > i) { Assert.Equal(0f, got); continue; }
                            double p = Math.Exp(s[j] - max) / sum;
                            Assert.True(Math.Abs(got - p) <= 1e-5, $"pattern[{b},{h},{i},{j}] = {got} vs {p}");
                            for (int e = 0; e < dh; e++) z[i, h * dh + e] += p * v[j][e];
                        }
                    }
                }
                for (int t = 0; t < T; t++)
                    for (int c = 0; c < D; c++)
                    {
                        double o = a.BO[c];
                        for (int e = 0; e < hd; e++) o += z[t, e] * a.WO[e * D + c];
                        float got = a.Output[(b * T + t) * D + c];
                        Assert.True(Math.Abs(got - o) <= 2e-5 * (1 + Math.Abs(o)), $"{kernels.Name}: out[{b},{t},{c}] = {got} vs {o}");
                    }
            }
        }
    }

    // ---------------------------------------------------------------- CrossEntropy

    [Theory]
    [InlineData(1f)]
    [InlineData(1f / 6)]
    public void CrossEntropyBackwardMatchesFiniteDifferences(float scale)
    {
        const int N = 6, V = 11;
        var rng = new Rng(scale == 1f ? 80UL : 81UL);
        var logits = Normal(ref rng, N * V, std: 2);
        var targets = new int[N];
        for (int n = 0; n < N; n++) targets[n] = rng.NextInt(V);
        var losses = new float[N];
        foreach (var k in BothSets)
        {
            double total = k.CrossEntropyForward(logits, targets, losses, N, V);
            double sum = 0;
            for (int n = 0; n < N; n++)
            {
                double max = double.NegativeInfinity, se = 0;
                for (int i = 0; i < V; i++) max = Math.Max(max, logits[n * V + i]);
                for (int i = 0; i < V; i++) se += Math.Exp(logits[n * V + i] - max);
                double expected = Math.Log(se) + max - logits[n * V + targets[n]];
                Assert.True(Math.Abs(losses[n] - expected) <= 1e-5 * Math.Max(1, expected), $"loss[{n}] = {losses[n]} vs {expected}");
                sum += losses[n];
            }
            Assert.Equal(sum, total, 12); // Forward returns the sum of the per-row losses

            double Loss() => scale * k.CrossEntropyForward(logits, targets, losses, N, V);

            var g = RunBackward(ref rng, [("dlogits", N * V, false)],
                gs => k.CrossEntropyBackward(logits, targets, gs[0], scale, N, V));
            CheckGradient($"{k.Name} dlogits", logits, g[0], Loss, ref rng);
        }
    }
}

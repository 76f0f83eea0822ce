using System.Runtime.Intrinsics;
using MiniGpt.Tensors;

namespace MiniGpt.Bench;

/// <summary>
/// The first GEMV (commit eb89ea1's Gemv.Forward), kept as the baseline of the current one: threads split over
/// bands of 128 output columns, each task walking all rows, 64 columns in eight Vector256 accumulators, so each row
/// contributes 512 contiguous bytes and the next is O·4 bytes further on.
/// </summary>
internal static unsafe class BandGemv
{
    public const int Band = 128;

    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, int G, int I, int O)
    {
        fixed (float* px = x, pw = w, pb = b, py = y)
        {
            int bands = (O + Band - 1) / Band;
            var job = new Job { X = px, W = pw, B = b.IsEmpty ? null : pb, Y = py, G = G, I = I, O = O, BandsPerGroup = bands };
            RowParallel.Run(&BandTask, &job, G * bands, (long)G * I * O);
        }
    }

    private struct Job { public float* X, W, B, Y; public int G, I, O, BandsPerGroup; }

    private static void BandTask(void* ctx, int t)
    {
        var j = (Job*)ctx;
        int g = t / j->BandsPerGroup, c0 = t % j->BandsPerGroup * Band, I = j->I, O = j->O;
        int c1 = Math.Min(c0 + Band, O);
        float* x = j->X, w = j->W + (long)g * I * O, y = j->Y + (long)g * O, b = j->B == null ? null : j->B + (long)g * O;
        int c = c0;
        // 64 columns: eight independent accumulators hide the FMA latency; each row contributes 256 contiguous bytes
        for (; c + 64 <= c1; c += 64)
        {
            Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
            float* r = w + c;
            for (int i = 0; i < I; i++, r += O)
            {
                var xi = Vector256.Create(x[i]);
                s0 = Vector256.FusedMultiplyAdd(Vector256.Load(r), xi, s0);
                s1 = Vector256.FusedMultiplyAdd(Vector256.Load(r + 8), xi, s1);
                s2 = Vector256.FusedMultiplyAdd(Vector256.Load(r + 16), xi, s2);
                s3 = Vector256.FusedMultiplyAdd(Vector256.Load(r + 24), xi, s3);
                s4 = Vector256.FusedMultiplyAdd(Vector256.Load(r + 32), xi, s4);
                s5 = Vector256.FusedMultiplyAdd(Vector256.Load(r + 40), xi, s5);
                s6 = Vector256.FusedMultiplyAdd(Vector256.Load(r + 48), xi, s6);
                s7 = Vector256.FusedMultiplyAdd(Vector256.Load(r + 56), xi, s7);
            }
            Store(s0, y, b, c); Store(s1, y, b, c + 8); Store(s2, y, b, c + 16); Store(s3, y, b, c + 24);
            Store(s4, y, b, c + 32); Store(s5, y, b, c + 40); Store(s6, y, b, c + 48); Store(s7, y, b, c + 56);
        }
        for (; c + 8 <= c1; c += 8)
        {
            Vector256<float> s = default;
            float* r = w + c;
            for (int i = 0; i < I; i++, r += O) s = Vector256.FusedMultiplyAdd(Vector256.Load(r), Vector256.Create(x[i]), s);
            Store(s, y, b, c);
        }
        // the last columns one at a time, with the same fused multiply-add as a vector lane (same bits)
        for (; c < c1; c++)
        {
            float s = 0;
            float* r = w + c;
            for (int i = 0; i < I; i++, r += O) s = MathF.FusedMultiplyAdd(*r, x[i], s);
            y[c] = b == null ? s : s + b[c];
        }
    }

    private static void Store(Vector256<float> s, float* y, float* b, int c) => (b == null ? s : s + Vector256.Load(b + c)).Store(y + c);
}

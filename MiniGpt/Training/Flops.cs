using System.Globalization;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MiniGpt.Model;

namespace MiniGpt.Training;

/// <summary>
/// Model FLOPs of a training step and the machine's peak, for model FLOP utilisation (MFU):
/// MFU = model FLOPs per step ÷ step time ÷ peak FLOP/s (Chowdhery et al., "PaLM", 2022, appendix B).
/// </summary>
public static class Flops
{
    /// <summary>
    /// 6·P·tokens for the weight matmuls (2 forward + 4 backward per multiply-add; P counts W_Q/K/V/O,
    /// W_in/W_out and W_U, not the embedding lookups), plus attention's Q·Kᵀ and P·V: 4·T·D per token and
    /// layer forward, ×3 with backward, counted over the whole T×T square as PaLM does (causal kernels
    /// do about half of it, so MFU understates the work done).
    /// </summary>
    public static double PerStep(ModelConfig c, int batch, int seqLen)
    {
        double tokens = (double)batch * seqLen;
        double hd = c.NHeads * c.DHead;
        double perLayer = 4.0 * c.DModel * hd + (c.HasMlp ? 2.0 * c.DModel * c.DMlp : 0);
        double p = c.NLayers * perLayer + (double)c.DModel * c.DVocab;
        double attention = 12.0 * c.NLayers * hd * seqLen; // per token: 3 × (2·T·hd for Q·Kᵀ + 2·T·hd for P·V)
        return tokens * (6.0 * p + attention);
    }

    /// <summary>
    /// The model FLOPs of <see cref="PerStep"/> that fall in one phase of the step (`bench --profile`): each weight
    /// product 2·N·in·out forward and twice that backward, attention 4·N·T·H·d_head forward (the whole square, as
    /// PerStep counts it) and twice that backward; 0 for the phases that do no matmul. They sum to PerStep.
    /// </summary>
    public static double InPhase(Tensors.StepPhase phase, ModelConfig c, int batch, int seqLen)
    {
        double n = (double)batch * seqLen, hd = c.NHeads * c.DHead, d = c.DModel, layers = c.NLayers;
        double mlp = c.HasMlp ? 2 * n * d * c.DMlp * layers : 0;
        return phase switch
        {
            Tensors.StepPhase.Qkv => 2 * n * d * 3 * hd * layers,
            Tensors.StepPhase.Attention => 4 * n * seqLen * hd * layers,
            Tensors.StepPhase.AttnOut => 2 * n * hd * d * layers,
            Tensors.StepPhase.MlpIn or Tensors.StepPhase.MlpOut => mlp,
            Tensors.StepPhase.Unembed => 2 * n * d * c.DVocab,
            Tensors.StepPhase.QkvBackward => 2 * InPhase(Tensors.StepPhase.Qkv, c, batch, seqLen),
            Tensors.StepPhase.AttentionBackward => 2 * InPhase(Tensors.StepPhase.Attention, c, batch, seqLen),
            Tensors.StepPhase.AttnOutBackward => 2 * InPhase(Tensors.StepPhase.AttnOut, c, batch, seqLen),
            Tensors.StepPhase.MlpInBackward or Tensors.StepPhase.MlpOutBackward => 2 * mlp,
            Tensors.StepPhase.UnembedBackward => 2 * InPhase(Tensors.StepPhase.Unembed, c, batch, seqLen),
            _ => 0,
        };
    }

    /// <summary>Peak fp32 FLOP/s of `threads` cores: FMA pipes × fp32 lanes per pipe × 2 × clock.</summary>
    public static Peak MachinePeak(int threads)
    {
        // Zen 4 (AMD family 19h) executes a 512-bit operation as two 256-bit halves: its datapath is 256 bits.
        // Zen 5 (family 1Ah) has full 512-bit FMA pipes, as Intel's AVX-512 server cores do.
        bool amd = X86Base.IsSupported && X86Base.CpuId(0, 0) is var (_, ebx, _, _) && ebx == 0x68747541; // "Auth"enticAMD
        bool halfWidth512 = amd && AmdFamily() < 0x1A;
        int vectorBits = Vector512.IsHardwareAccelerated && !halfWidth512 ? 512 : Vector256.IsHardwareAccelerated ? 256 : 128;
        int fmaPipes = Fma.IsSupported || Vector512.IsHardwareAccelerated ? 2 : 1;
        double ghz = ClockGHz(out string clockSource);
        double perCore = fmaPipes * (vectorBits / 32) * 2 * ghz * 1e9;
        return new Peak(perCore * threads, threads, vectorBits, fmaPipes, ghz, clockSource);
    }

    // CPUID leaf 1: family = base family (bits 8–11) + extended family (bits 20–27) when the base is 0xF.
    private static int AmdFamily()
    {
        int eax = X86Base.CpuId(1, 0).Eax;
        int family = (eax >> 8) & 0xF;
        return family == 0xF ? family + ((eax >> 20) & 0xFF) : family;
    }

    /// <summary>
    /// MINIGPT_CLOCK_GHZ if set, else measured: a chain of dependent integer adds and xors runs at one
    /// operation per cycle, so operations ÷ seconds is the clock the core actually runs at (a VM's
    /// /proc/cpuinfo shows the nominal base clock, not the boost clock the kernels run at). Best of 5.
    /// </summary>
    private static double ClockGHz(out string source)
    {
        var env = Environment.GetEnvironmentVariable("MINIGPT_CLOCK_GHZ");
        if (double.TryParse(env, NumberStyles.Float, CultureInfo.InvariantCulture, out double g) && g > 0) { source = "MINIGPT_CLOCK_GHZ"; return g; }
        double best = 0;
        for (int r = 0; r < 5; r++) best = Math.Max(best, DependentChainGHz(20_000_000));
        source = "measured";
        return best;
    }

    private static long _sink;

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static double DependentChainGHz(long iterations)
    {
        long x = 1;
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        for (long i = 0; i < iterations; i++) { x += i; x ^= i; x += i; x ^= i; } // 4 dependent 1-cycle operations
        double secs = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds;
        _sink = x;
        return 4.0 * iterations / secs / 1e9;
    }

    public sealed record Peak(double FlopsPerSecond, int Threads, int VectorBits, int FmaPipes, double ClockGHz, string ClockSource)
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"peak {FlopsPerSecond / 1e9:F0} GFLOP/s = {Threads} cores × {FmaPipes} FMA pipes × {VectorBits / 32} fp32 lanes × 2 × {ClockGHz:F2} GHz ({ClockSource})");
    }
}

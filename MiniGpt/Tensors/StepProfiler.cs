using System.Diagnostics;

namespace MiniGpt.Tensors;

/// <summary>The parts of a training step <see cref="StepProfiler"/> times, in the order a step runs them.</summary>
public enum StepPhase
{
    Other,
    Data,
    Embed, LayerNorm, Qkv, Attention, AttnOut, MlpIn, Gelu, MlpOut, Residual, Unembed, Loss,
    LossBackward, UnembedBackward, LayerNormBackward, MlpOutBackward, GeluBackward, MlpInBackward,
    AttnOutBackward, AttentionBackward, QkvBackward, ResidualBackward, EmbedBackward,
    ZeroGrad, Clip, Optimizer,
}

/// <summary>
/// Where a training step's time goes, phase by phase (`bench --profile`). The model, the attention layer and the
/// trainer call <see cref="Enter"/> where a phase begins; the time until the next call is the phase's. While a phase
/// runs, the worker pool counts the ticks each thread spends running tasks, so a phase also gets its busy fraction:
///   busy = (calling thread's wall time − its wait for helpers at the end of each region) + Σ helpers' task time
///   utilisation = busy ÷ (wall × threads)
/// and 1 − utilisation is what the threads spent idle: waking up, waiting at a region's end for the slowest task,
/// or parked while the calling thread ran serial code. (A task that spins inside, as the matmul's pipelined tasks do
/// while an earlier k block is packed, counts as busy.)
/// Off unless started: Enter is then one static read and a branch, so the marks stay in the code for good.
/// It times the thread that started it (and the pool that thread's kernels use); marks from other threads are ignored.
/// </summary>
public static class StepProfiler
{
    private static readonly int Count = Enum.GetValues<StepPhase>().Length;
    private static readonly long[] Wall = new long[Count], Busy = new long[Count];
    private static readonly int[] Entries = new int[Count];
    private static StepPhase _current;
    private static long _since, _helperSince, _waitSince;
    private static int _threads, _owner;

    public static bool Enabled { get; private set; }

    /// <summary>Clears the totals and starts timing in <see cref="StepPhase.Other"/>.</summary>
    public static void Start()
    {
        Array.Clear(Wall);
        Array.Clear(Busy);
        Array.Clear(Entries);
        var pool = WorkerPool.Current;
        _threads = pool.Threads;
        pool.ProfileRegions = true;
        _current = StepPhase.Other;
        _since = Stopwatch.GetTimestamp();
        _helperSince = pool.HelperBusyTicks;
        _waitSince = pool.CallerWaitTicks;
        _owner = Environment.CurrentManagedThreadId;
        Enabled = true;
    }

    /// <summary>Ends the current phase and begins p.</summary>
    public static void Enter(StepPhase p)
    {
        if (!Enabled || Environment.CurrentManagedThreadId != _owner) return;
        Close();
        _current = p;
        Entries[(int)p]++;
    }

    /// <summary>Stops timing; the totals stay readable until the next Start.</summary>
    public static void Stop()
    {
        if (!Enabled || Environment.CurrentManagedThreadId != _owner) return;
        Close();
        Enabled = false;
        WorkerPool.Current.ProfileRegions = false;
    }

    private static void Close()
    {
        var pool = WorkerPool.Current;
        long now = Stopwatch.GetTimestamp(), helper = pool.HelperBusyTicks, wait = pool.CallerWaitTicks;
        long wall = now - _since;
        Wall[(int)_current] += wall;
        Busy[(int)_current] += wall - (wait - _waitSince) + (helper - _helperSince);
        _since = now; _helperSince = helper; _waitSince = wait;
    }

    /// <summary>Seconds spent in p since Start.</summary>
    public static double Seconds(StepPhase p) => (double)Wall[(int)p] / Stopwatch.Frequency;

    /// <summary>Busy thread-time ÷ (wall × threads) in p: 1 when every thread ran tasks all the phase long.</summary>
    public static double Utilisation(StepPhase p) => Wall[(int)p] == 0 ? 0 : (double)Busy[(int)p] / (Wall[(int)p] * (double)_threads);

    /// <summary>How many times p was entered since Start.</summary>
    public static int EntriesOf(StepPhase p) => Entries[(int)p];

    /// <summary>The phase's name as `bench --profile` prints it: forward phases plain, backward ones with "/bw".</summary>
    public static string Label(StepPhase p)
    {
        string s = p.ToString();
        bool bw = s.EndsWith("Backward", StringComparison.Ordinal);
        if (bw) s = s[..^"Backward".Length];
        var sb = new System.Text.StringBuilder();
        foreach (char ch in s)
        {
            if (char.IsUpper(ch) && sb.Length > 0) sb.Append('_');
            sb.Append(char.ToLowerInvariant(ch));
        }
        return bw ? sb + " bw" : sb.ToString();
    }
}

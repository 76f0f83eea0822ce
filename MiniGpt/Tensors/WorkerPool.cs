namespace MiniGpt.Tensors;

/// <summary>
/// A fixed set of worker threads that run numbered tasks 0..n-1 without allocating.
/// Parallel.For allocates a closure and state per call; a training step makes hundreds of calls,
/// so kernels use this instead. Which thread runs a task never changes what the task computes:
/// kernels partition their output into tasks, each written by exactly one task with a fixed
/// reduction order, so results are bitwise identical for any thread count.
/// </summary>
public sealed unsafe class WorkerPool : IDisposable
{
    private readonly Thread[] _threads;
    private readonly SemaphoreSlim[] _wake;
    private delegate*<void*, int, void> _body;
    private void* _ctx;
    private int _taskCount;
    private int _nextTask;
    private int _running;
    private volatile bool _disposed;

    // A worker that has finished a region polls its semaphore this long for the next one before blocking on it.
    // A training step is ~100 regions with a little serial work between them; waking a blocked thread costs a
    // futex call and a reschedule (tens of µs in a VM), which showed as ~8 % of a WC step in perf. The semaphore
    // still carries every wake-up, so polling changes only how a worker waits, never whether it sees a region.
    private static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 10_000; // 100 µs

    public int Threads { get; }

    // StepProfiler's counters, kept only while it runs: task time of the helper threads, and the time the calling
    // thread waits at the end of a region for helpers still running tasks.
    private long _helperBusyTicks, _callerWaitTicks;
    internal bool ProfileRegions { get; set; }
    internal long HelperBusyTicks => Volatile.Read(ref _helperBusyTicks);
    internal long CallerWaitTicks => Volatile.Read(ref _callerWaitTicks);

    public WorkerPool(int threads)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), "need at least one thread");
        Threads = threads;
        _threads = new Thread[threads - 1];
        _wake = new SemaphoreSlim[threads - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            _wake[i] = new SemaphoreSlim(0);
            int id = i;
            _threads[i] = new Thread(() => WorkerLoop(id)) { IsBackground = true, Name = $"minigpt-worker-{i + 1}" };
            _threads[i].Start();
        }
    }

    private static WorkerPool? _shared;
    private static readonly object SharedLock = new();

    /// <summary>The pool kernels use. Set once from the command line (--threads) or tests.</summary>
    public static WorkerPool Shared
    {
        get
        {
            var p = _shared;
            if (p != null) return p;
            lock (SharedLock) return _shared ??= new WorkerPool(Environment.ProcessorCount);
        }
    }

    [ThreadStatic] private static WorkerPool? _threadOverride;

    /// <summary>The pool kernels called from this thread use: an override set by <see cref="UseOnThisThread"/>, else <see cref="Shared"/>.</summary>
    public static WorkerPool Current => _threadOverride ?? Shared;

    /// <summary>Makes kernels called from this thread use pool (null: back to Shared). Tests use it to compare thread counts side by side.</summary>
    public static void UseOnThisThread(WorkerPool? pool) => _threadOverride = pool;

    public static void SetSharedThreads(int threads)
    {
        lock (SharedLock)
        {
            if (_shared?.Threads == threads) return;
            var old = _shared;
            _shared = new WorkerPool(threads);
            old?.Dispose();
        }
    }

    /// <summary>Runs body(ctx, i) for i in [0, taskCount); returns when all have finished.</summary>
    public void Run(delegate*<void*, int, void> body, void* ctx, int taskCount)
    {
        if (taskCount <= 0) return;
        if (taskCount == 1 || _threads.Length == 0)
        {
            for (int i = 0; i < taskCount; i++) body(ctx, i);
            return;
        }
        lock (this) // one parallel region at a time per pool
        {
            if (_disposed)
            {
                for (int i = 0; i < taskCount; i++) body(ctx, i);
                return;
            }
            _body = body;
            _ctx = ctx;
            _taskCount = taskCount;
            _nextTask = 0;
            int helpers = Math.Min(_threads.Length, taskCount - 1);
            Volatile.Write(ref _running, helpers);
            for (int i = 0; i < helpers; i++) _wake[i].Release();
            Drain();
            bool profile = ProfileRegions;
            long w0 = profile ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
            var spin = new SpinWait();
            while (Volatile.Read(ref _running) != 0) spin.SpinOnce(-1);
            if (profile) _callerWaitTicks += System.Diagnostics.Stopwatch.GetTimestamp() - w0;
        }
    }

    private void Drain()
    {
        int n = _taskCount;
        var body = _body;
        void* ctx = _ctx;
        int i;
        while ((i = Interlocked.Increment(ref _nextTask) - 1) < n) body(ctx, i);
    }

    private void WorkerLoop(int id)
    {
        while (true)
        {
            WaitForRegion(_wake[id]);
            if (_disposed) return;
            if (ProfileRegions)
            {
                long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                Drain();
                Interlocked.Add(ref _helperBusyTicks, System.Diagnostics.Stopwatch.GetTimestamp() - t0);
            }
            else Drain();
            Interlocked.Decrement(ref _running);
        }
    }

    private static void WaitForRegion(SemaphoreSlim wake)
    {
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        for (int i = 0; ; i++)
        {
            if (wake.CurrentCount > 0 && wake.Wait(0)) return;
            Thread.SpinWait(4);
            if ((i & 63) == 63 && System.Diagnostics.Stopwatch.GetTimestamp() - t0 > SpinTicks) break;
        }
        wake.Wait();
    }

    public void Dispose()
    {
        lock (this) // waits for a parallel region in flight
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var w in _wake) w.Release();
        }
    }
}

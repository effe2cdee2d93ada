using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Monitoring.Stream.Ingest;

/// <summary>
/// The wall clock, in milliseconds since the Unix epoch, for points written without a timestamp on the
/// system clock while writers are busy: one field, written about once a millisecond by a background thread
/// of its own, read by every stamped write.
/// </summary>
/// <remarks>
/// <para>PERF: the cheapest clock the kernel offers here, the monotonic coarse one, costs about 7 ns a
/// read on this machine's virtual clock (a C loop; 4 ms resolution), and a stamped write of the engine's
/// one-thread writer cost 16 ns of its caller's CPU against 8 ns with a timestamp given (Hosting benchmarks,
/// <c>writer-bound</c>, docs/benchmarks.md "Session 9"). A field read costs a fraction of a nanosecond and,
/// written every millisecond from the precise wall clock, is finer than the coarse clock's 4 ms.</para>
/// <para>The thread costs about 1.2 % of a core while it ticks (a wake-up every millisecond on this virtual
/// machine), which a write saving 7 ns repays only above about 1.7 million stamped points a second. So it
/// ticks only while writers start batches fast enough: they count the batches they start (not points),
/// a ticking thread that counted fewer than the minimum in its last check period goes to sleep, and a
/// sleeping thread is woken by the writer whose batch reaches that many within a check period. Writers of
/// a sleeping thread stamp from the coarse clock as before.</para>
/// <para>A reader uses the field only when it is not 0, and the thread writes 0 before it sleeps, so a stamp
/// never comes from a sleeping thread. It lags the wall clock by the thread's delay: about a millisecond, more
/// if the machine starves that thread of CPU (tens of milliseconds beside a process of much higher CPU weight)
/// or right after a runtime pause, which stops the writers too.</para>
/// </remarks>
internal sealed class StampClock : IDisposable
{
    /// <summary>Ticks between two looks at the writers' rate (about 100 ms).</summary>
    public const int DefaultCheckTicks = 100;

    /// <summary>Batches started within a check period that keep the thread ticking (about 2 million points a second at the default batch size).</summary>
    public const int DefaultMinBatches = 200;

    private readonly AutoResetEvent _wake = new(false);
    private readonly Lock _startGate = new();
    private readonly int _checkTicks;
    private readonly int _minBatches;
    private Shared _shared;
    private Thread? _thread;
    private volatile bool _disposed;

    /// <summary>A clock with its own thresholds (tests use their own clocks).</summary>
    /// <param name="checkTicks">Ticks (about a millisecond each) between two looks at the rate; also the window a sleeping thread's wake is counted in, in ms.</param>
    /// <param name="minBatches">Batches started within one such period that keep or bring the thread ticking.</param>
    internal StampClock(int checkTicks = DefaultCheckTicks, int minBatches = DefaultMinBatches)
    {
        _checkTicks = checkTicks;
        _minBatches = minBatches;
        _shared.AsleepSinceTick = Environment.TickCount64;
    }

    /// <summary>The process's clock, shared by every pipeline's writers.</summary>
    public static StampClock Default { get; } = new();

    /// <summary>Ticks so far (the thread is running while this moves).</summary>
    internal long Ticks => Volatile.Read(ref _shared.Ticks);

    /// <summary>Times the thread went to sleep for want of batches.</summary>
    internal long Sleeps => Volatile.Read(ref _shared.Sleeps);

    /// <summary>Whether the thread is ticking now.</summary>
    internal bool IsTicking => Volatile.Read(ref _shared.NowMs) != 0;

    /// <summary>The wall clock in Unix milliseconds as of the last tick, or 0 when the thread is not ticking (read the clock instead).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long Read() => Volatile.Read(ref _shared.NowMs);

    /// <summary>
    /// A writer started <paramref name="batches"/> batches since it last said so: counted towards the rate that
    /// keeps the thread ticking; wakes (or starts) a sleeping thread once the rate is reached.
    /// </summary>
    public void NoteBatches(int batches)
    {
        long counted = Interlocked.Add(ref _shared.Batches, batches);
        if (counted >= _minBatches && Volatile.Read(ref _shared.NowMs) == 0 && !_disposed)
        {
            WakeIfFast();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WakeIfFast()
    {
        long tick = Environment.TickCount64;
        if (tick - Volatile.Read(ref _shared.AsleepSinceTick) > _checkTicks)
        {
            // That many batches, but not within one period: a slow writer. Count afresh from now.
            Volatile.Write(ref _shared.AsleepSinceTick, tick);
            Interlocked.Exchange(ref _shared.Batches, 0);
            return;
        }

        if (_thread is null)
        {
            Start();
        }

        _wake.Set();
    }

    private void Start()
    {
        lock (_startGate)
        {
            if (_thread is not null || _disposed)
            {
                return;
            }

            // Not a thread-pool thread: a stalled pool must not stall the clock points are stamped with.
            var thread = new Thread(Run) { IsBackground = true, Name = "Monitoring.Stream clock" };
            try
            {
                thread.Start();
            }
            catch (Exception e) when (e is OutOfMemoryException or ThreadStartException)
            {
                // No thread to be had (a process at its thread limit): a write never fails for it. Writers keep
                // reading the clock themselves, and no later batch tries again.
                _disposed = true;
                return;
            }

            _thread = thread;
        }
    }

    private void Run()
    {
        while (true)
        {
            _wake.WaitOne();
            if (_disposed)
            {
                return;
            }

            Interlocked.Exchange(ref _shared.Batches, 0);
            int sinceCheck = 0;
            while (true)
            {
                long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                Volatile.Write(ref _shared.NowMs, now == 0 ? 1 : now);
                Volatile.Write(ref _shared.Ticks, _shared.Ticks + 1);
                Thread.Sleep(1);
                if (++sinceCheck < _checkTicks)
                {
                    continue;
                }

                sinceCheck = 0;
                if (Interlocked.Exchange(ref _shared.Batches, 0) >= _minBatches && !_disposed)
                {
                    continue;
                }

                // Sleep: readers read the clock themselves from here on (a stamp in flight may still use the
                // last tick, a millisecond old). The rate is counted afresh for the wake.
                Interlocked.Exchange(ref _shared.NowMs, 0);
                Volatile.Write(ref _shared.AsleepSinceTick, Environment.TickCount64);
                Volatile.Write(ref _shared.Sleeps, _shared.Sleeps + 1);
                break;
            }
        }
    }

    /// <summary>Stops the thread (a test's own clock; the process's lives as long as the process).</summary>
    public void Dispose()
    {
        if (ReferenceEquals(this, Default))
        {
            return;
        }

        _disposed = true;
        Thread? thread;
        lock (_startGate)
        {
            thread = _thread;
        }

        _wake.Set();
        if (thread is null || thread.Join(TimeSpan.FromSeconds(5)))
        {
            _wake.Dispose();
        }
    }

    /// <summary>The value on a cache line of its own, away from the count writers add to, and from other statics.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 192)]
    private struct Shared
    {
        [FieldOffset(64)]
        public long NowMs;

        [FieldOffset(72)]
        public long Ticks;

        [FieldOffset(80)]
        public long Sleeps;

        [FieldOffset(128)]
        public long Batches;

        [FieldOffset(136)]
        public long AsleepSinceTick;
    }
}

using System.Runtime.CompilerServices;

namespace Monitoring.Stream.Ingest;

/// <summary>
/// The mutual exclusion of a <see cref="PointWriter"/>: between its caller and the engine (which flushes a
/// quiet writer and drains it at a stop), and between two threads that call it at once (misuse, refused).
/// </summary>
/// <remarks>
/// <para>PERF: the thread's id is read from a thread static of its own, which the JIT inlines;
/// <see cref="Environment.CurrentManagedThreadId"/> is a call into the runtime per write (about a third of a
/// bound write's CPU with the register spills around it).</para>
/// <para>PERF: an interlocked compare-exchange per call cost about a fifth of a bound write's CPU (it
/// drains the store buffer the point has just filled). The gate is instead biased to the thread that used
/// it last: that thread enters and leaves with plain stores and loads. Anyone else (the engine, or another
/// thread) takes a lock, raises <c>_revoked</c>, and then issues a process-wide memory barrier
/// (<see cref="Interlocked.MemoryBarrierProcessWide"/>) before looking whether the biased thread is inside.
/// That barrier orders the biased thread's "I am inside" store before its load of <c>_revoked</c>, as a
/// full fence on its side would, so at most one of the two goes on (the asymmetric Dekker handshake
/// behind biased locks). The barrier costs microseconds; it is paid only when the writer changes hands
/// or the engine flushes a writer that has gone quiet with points buffered.</para>
/// <para>A bias is an object of its own, so a thread that loses the bias and then enters writes to its old
/// bias object, never to the new holder's flag.</para>
/// </remarks>
internal struct WriterGate
{
    private const int Free = 0;
    private const int HeldByCaller = 1;
    private const int HeldByEngine = 2;

    /// <summary>No managed thread has id 0: the first caller always takes the slow path and becomes the bias.</summary>
    private static readonly Bias s_nobody = new(0);

    private Bias _bias;
    private int _revoked;
    private int _lock;
    private bool _heldViaLock;

    /// <summary>A gate biased to nobody yet.</summary>
    public WriterGate()
    {
        _bias = s_nobody;
    }

    /// <summary>Enters for the calling thread: with two plain stores when it holds the bias.</summary>
    /// <returns>False when another thread is inside a call (nothing entered): the caller refuses.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Enter() => TryEnterBiased() || EnterSlow();

    /// <summary>Enters with two plain stores when the calling thread holds the bias; false (nothing entered) otherwise.</summary>
    /// <remarks>For a caller that puts everything else in a method of its own, <see cref="EnterSlow()"/> included, so
    /// that nothing of its fast path has to outlive a call (and be stored to the stack first).</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryEnterBiased()
    {
        Bias bias = _bias;
        if (bias.IsCurrentThread())
        {
            Volatile.Write(ref bias.Inside, 1);
            // The bias is read again: a thread that lost it while between calls may have read the old one
            // before the new holder lowered _revoked again.
            if (Volatile.Read(ref _revoked) == 0 && ReferenceEquals(Volatile.Read(ref _bias), bias))
            {
                return true;
            }

            Volatile.Write(ref bias.Inside, 0);
        }

        return false;
    }

    /// <summary>Leaves what <see cref="Enter"/> entered.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Exit()
    {
        if (_heldViaLock)
        {
            ExitLocked();
            return;
        }

        Volatile.Write(ref _bias.Inside, 0);
    }

    /// <summary>For the engine: enters unless a caller is inside a call (then it returns false at once).</summary>
    public bool TryEnterEngine()
    {
        if (Interlocked.CompareExchange(ref _lock, HeldByEngine, Free) != Free)
        {
            return false;
        }

        if (!Revoke())
        {
            Volatile.Write(ref _lock, Free);
            return false;
        }

        return true;
    }

    /// <summary>
    /// For the engine: enters, waiting for a call under way to end (a call never waits for the engine, so this
    /// is microseconds, or one bounded sleep of a writer on a full shard), unless <paramref name="giveUp"/>
    /// turns true first.
    /// </summary>
    /// <returns>False only when <paramref name="giveUp"/> turned true before the gate was entered.</returns>
    /// <remarks>
    /// Unlike retrying <see cref="TryEnterEngine"/>, which lowers <c>_revoked</c> again each time it finds the
    /// biased thread inside (a thread writing in a loop is inside most of the time, so each try mostly fails),
    /// this keeps the bias revoked while it waits: the biased thread's next call takes the slow path and waits
    /// for the engine instead of entering again.
    /// </remarks>
    public bool EnterEngine(Func<bool> giveUp)
    {
        var spinner = default(SpinWait);
        while (Interlocked.CompareExchange(ref _lock, HeldByEngine, Free) != Free)
        {
            if (giveUp())
            {
                return false;
            }

            spinner.SpinOnce();
        }

        Bias bias = _bias;
        if (ReferenceEquals(bias, s_nobody))
        {
            return true;
        }

        Volatile.Write(ref _revoked, 1);
        Interlocked.MemoryBarrierProcessWide();
        spinner = default;
        while (Volatile.Read(ref bias.Inside) != 0)
        {
            if (giveUp())
            {
                ExitEngine();
                return false;
            }

            spinner.SpinOnce();
        }

        return true;
    }

    /// <summary>Leaves what <see cref="TryEnterEngine"/> entered.</summary>
    public void ExitEngine()
    {
        Volatile.Write(ref _revoked, 0);
        Volatile.Write(ref _lock, Free);
    }

    /// <summary>Enters through the gate's lock (after <see cref="TryEnterBiased"/> failed): false when another thread is inside a call.</summary>
    public bool EnterSlow()
    {
        bool never = false;
        return EnterSlow(ref never, out _);
    }

    /// <summary>
    /// As <see cref="EnterSlow()"/>, but instead of waiting for the engine to leave, returns false with
    /// <paramref name="closedWhileEngineInside"/> set once <paramref name="closed"/> is true: a closed writer's call is
    /// refused without entering, never held behind the engine's flush (which, at a stop, may wait for room in a full
    /// shard for as long as a sink holds it).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public bool EnterSlow(ref bool closed, out bool closedWhileEngineInside)
    {
        closedWhileEngineInside = false;
        var spinner = default(SpinWait);
        while (true)
        {
            int held = Volatile.Read(ref _lock);
            if (held == HeldByCaller)
            {
                // Another thread is inside a call through the lock: two threads at once.
                return false;
            }

            if (held == Free && Interlocked.CompareExchange(ref _lock, HeldByCaller, Free) == Free)
            {
                break;
            }

            if (held == HeldByEngine && Volatile.Read(ref closed))
            {
                closedWhileEngineInside = true;
                return false;
            }

            // The engine flushing this writer: microseconds (or, for a closed writer, refused above).
            spinner.SpinOnce(sleep1Threshold: -1);
        }

        int me = WriterThread.Id;
        if (_bias.ThreadId != me)
        {
            if (!Revoke())
            {
                // The biased thread is inside a call: two threads at once.
                Volatile.Write(ref _lock, Free);
                return false;
            }

            _bias = new Bias(me);
            Volatile.Write(ref _revoked, 0);
        }

        _heldViaLock = true;
        return true;
    }

    private void ExitLocked()
    {
        _heldViaLock = false;
        Volatile.Write(ref _lock, Free);
    }

    /// <summary>Holding the lock: stops the biased thread's fast path; false (undone) if it is inside a call.</summary>
    private bool Revoke()
    {
        Bias bias = _bias;
        if (ReferenceEquals(bias, s_nobody))
        {
            return true;
        }

        Volatile.Write(ref _revoked, 1);
        Interlocked.MemoryBarrierProcessWide();
        if (Volatile.Read(ref bias.Inside) != 0)
        {
            Volatile.Write(ref _revoked, 0);
            return false;
        }

        return true;
    }

    private sealed unsafe class Bias
    {
        public readonly int ThreadId;
        public int Inside;

        // The holder's stack, when known: a stack is its thread's alone while the thread lives (a thread that
        // later gets the same addresses can only follow a holder that has ended, and takes its place).
        private readonly nuint _stackLow;
        private readonly nuint _stackSize;

        public Bias(int threadId)
        {
            ThreadId = threadId;
            if (threadId != 0 && ThreadStack.TryGetCurrent(out nuint low, out nuint size))
            {
                _stackLow = low;
                _stackSize = size;
            }
        }

        /// <summary>Whether the calling thread holds this bias.</summary>
        /// <remarks>PERF: where the stack is known, two compares on the address of a local; the thread's
        /// id otherwise (a thread-static read through a runtime helper, and the register spills of a call). The
        /// probe is neither written nor zeroed (only its address is used): that store per call waited in line
        /// behind the writer's stores of the point.</remarks>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        [SkipLocalsInit]
        public bool IsCurrentThread()
        {
            if (_stackSize != 0)
            {
                byte probe;
                return (nuint)(&probe) - _stackLow < _stackSize;
            }

            return ThreadId == WriterThread.Id;
        }
    }
}

using System.Runtime.CompilerServices;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Series;

namespace Monitoring.Stream.Hosting.Instruments;

/// <summary>
/// A label set resolved to a series id, re-resolved when the registry has reclaimed idle series since:
/// a handle bound long ago must not keep writing through an id whose series was reclaimed (once the
/// engine retires that id, its shard refuses every point as stale).
/// </summary>
/// <remarks>
/// <para>The id is read by the writer once it holds its gate (<see cref="ISeriesLookup"/>): a thread stopped
/// between reading the id and appending its point would otherwise look quiet to the engine, which could flush
/// it past a reclaim, retire the id, and refuse the point as stale.</para>
/// <para>PERF: the common path is one read of the registry's reclaim counter. Any reclaim anywhere makes every
/// binding look its series up again once (a hash lookup), which finds the same id while its series lives.
/// A point written through the old id while the binding had not yet noticed is still aggregated: the
/// engine retires an unlisted id only once every writer has flushed past the unlisting.</para>
/// <para>PERF: a struct held inline by its handle (a field that is never copied: not readonly), and the id
/// inline in it as one 64-bit word, so a call reads the handle and nothing behind it: at 1,000 handles and
/// more, each object between the handle and the id was a dependent miss per call (about a sixth of the
/// calling thread's time at 1,000 series).</para>
/// <para>Re-resolving publishes the id before the reclaim count it was resolved at, one thread at a time (a
/// compare-exchange claims the turn; no thread waits) and only for a count newer than the one published: a
/// reader that sees a count reads an id resolved at that count or later, never an older one, and never half
/// of one. A lock here made threads that all re-resolved after the same reclaim sleep on each other.</para>
/// </remarks>
internal struct SeriesBinding : ISeriesLookup
{
    private readonly SeriesRegistry _registry;
    private readonly SharedPointWriter _writer;
    private readonly string _metric;
    private readonly Label[] _labels;
    private readonly int _owner;

    /// <summary>The id's index in the low 32 bits, its generation in the high 32 (see <see cref="Pack"/>).</summary>
    private long _id;

    /// <summary>A mark in <see cref="_reclaimedSeen"/> while one thread publishes a new id.</summary>
    private const long Publishing = -1;

    /// <summary>The registry's reclaim count when <see cref="_id"/> was resolved; written after it.</summary>
    private long _reclaimedSeen;

    public SeriesBinding(SeriesRegistry registry, SharedPointWriter writer, string metric, Label[] labels)
    {
        _registry = registry;
        _writer = writer;
        _metric = metric;
        _labels = labels;
        long seen = registry.Reclaimed;
        SeriesId id = registry.GetOrAdd(metric, labels);
        _owner = id.Owner;
        _id = Pack(id);
        _reclaimedSeen = seen;
    }

    public SeriesId Current
    {
        get
        {
            long seen = Volatile.Read(ref _reclaimedSeen);
            long id = Volatile.Read(ref _id);
            return _registry.Reclaimed == seen ? Unpack(id) : Rebind();
        }
    }

    /// <summary>Writes one value of the bound series, stamped with the engine clock.</summary>
    public RejectReason Write(double value) => _writer.WriteLookedUp(ref this, value);

    /// <summary>Writes one value of the bound series at an explicit event time (ms since the Unix epoch).</summary>
    public RejectReason Write(double value, long timestampUnixMs) => _writer.WriteLookedUp(ref this, value, timestampUnixMs);

    /// <summary>A kept id never refuses: the engine refuses a retired one as stale.</summary>
    public static bool RefusalsCountedByWriter => true;

    /// <summary>The id, read by the writer holding its gate.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public RejectReason Resolve(out SeriesId id)
    {
        id = Current;
        return RejectReason.None;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long Pack(SeriesId id) => (uint)id.Value | ((long)id.Generation << 32);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private readonly SeriesId Unpack(long id) => new((int)id, _owner, (int)(id >>> 32));

    [MethodImpl(MethodImplOptions.NoInlining)]
    private SeriesId Rebind()
    {
        long reclaimed = _registry.Reclaimed;
        // A failed lookup (a limit reached meanwhile, or a fault) keeps the old id: the engine then counts the
        // refusal. Nothing is thrown: this runs inside the writer's gate (ISeriesLookup).
        SeriesId id;
        try
        {
            id = _registry.TryGetOrAdd(_metric, _labels, out SeriesId fresh) == RejectReason.None ? fresh : Unpack(Volatile.Read(ref _id));
        }
        catch (Exception)
        {
            return Unpack(Volatile.Read(ref _id));
        }

        // Published by one thread at a time, and only for a newer count: the claim (Publishing, which no count
        // equals) makes readers look up for themselves meanwhile, and no thread waits for another.
        long seen = Volatile.Read(ref _reclaimedSeen);
        if (seen != Publishing && seen < reclaimed && Interlocked.CompareExchange(ref _reclaimedSeen, Publishing, seen) == seen)
        {
            Volatile.Write(ref _id, Pack(id));
            Volatile.Write(ref _reclaimedSeen, reclaimed);
        }

        return id;
    }
}

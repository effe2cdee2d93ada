namespace Monitoring.Stream.Kafka.Source;

/// <summary>
/// The source's partitions cut into commit segments (docs/kafka.md, "Segments"): at a cut, every open window
/// holding the source's points is emitted, so each window batch holds points of one segment only, and the
/// offsets are committed only at cuts. A batch is then, for a consumer after a crash, wholly below the committed
/// offsets (kept) or wholly at or above them (read again by the next owner: dropped) — never both.
/// </summary>
/// <remarks>Not thread-safe: the source holds its metrics lock around every call.</remarks>
internal sealed class CommitSegments
{
    private readonly List<Sealed> _sealed = [];
    private readonly SortedDictionary<int, (long Low, long High)> _open = [];

    /// <summary>Segments sealed and not yet committed (or dropped as committed).</summary>
    public int SealedCount => _sealed.Count;

    /// <summary>Notes that the open segment holds a message read from <paramref name="offset"/> of <paramref name="partition"/>.</summary>
    public void OnRead(int partition, long offset)
    {
        _open[partition] = _open.TryGetValue(partition, out (long Low, long High) range)
            ? (Math.Min(range.Low, offset), Math.Max(range.High, offset))
            : (offset, offset);
    }

    /// <summary>
    /// Seals the open segment at a cut: <paramref name="cutPositions"/> per partition (one past its last
    /// checkpointed offset: where the next segment starts and where a commit of this one points), and per
    /// shard the sequence of the last batch emitted by the cut. The next segment starts at the cut positions.
    /// </summary>
    public void Seal(IReadOnlyDictionary<int, long> cutPositions, IReadOnlyList<long> emittedThrough)
    {
        var ranges = new SortedDictionary<int, (long Low, long High)>(_open);
        foreach ((int partition, long position) in cutPositions)
        {
            if (!ranges.ContainsKey(partition))
            {
                // Nothing read in this segment: an empty range that still says where the segment stands.
                ranges[partition] = (position, position - 1);
            }
        }

        _sealed.Add(new Sealed(ranges, new Dictionary<int, long>(cutPositions), [.. emittedThrough]));
        _open.Clear();
        foreach ((int partition, long position) in cutPositions)
        {
            _open[partition] = (position, position - 1);
        }
    }

    /// <summary>
    /// Forgets a partition given up (revoked or lost): it leaves the open segment and the cut positions of the sealed
    /// ones. Their ranges stay, for the headers of batches still to be written. Without this, a segment left
    /// uncommitted (a revoke that timed out) could be committed later for the partition come back, at its old cut:
    /// below what the partition's next owner had committed in between, moving the group's offset back.
    /// </summary>
    public void Forget(int partition)
    {
        _open.Remove(partition);
        foreach (Sealed segment in _sealed)
        {
            segment.CutPositions.Remove(partition);
        }
    }

    /// <summary>The ranges of the segment that the batch <paramref name="sequence"/> of <paramref name="shard"/> belongs to.</summary>
    public IEnumerable<KeyValuePair<int, (long Low, long High)>> RangesOf(int shard, long sequence)
    {
        foreach (Sealed segment in _sealed)
        {
            if (shard < segment.EmittedThrough.Length && sequence <= segment.EmittedThrough[shard])
            {
                return segment.Ranges;
            }
        }

        return _open;
    }

    /// <summary>
    /// The newest sealed segment whose every partition still held is acknowledged through its cut
    /// (<paramref name="acknowledged"/> gives a held partition's acknowledged offset, or null for one no longer
    /// held); its cut positions are returned and it and every older segment are dropped.
    /// </summary>
    public IReadOnlyDictionary<int, long>? TakeCommittable(Func<int, long?> acknowledged)
    {
        for (int i = _sealed.Count - 1; i >= 0; i--)
        {
            Sealed segment = _sealed[i];
            bool all = true;
            foreach ((int partition, long position) in segment.CutPositions)
            {
                if (acknowledged(partition) is long acked && acked < position - 1)
                {
                    all = false;
                    break;
                }
            }

            if (all)
            {
                _sealed.RemoveRange(0, i + 1);
                return segment.CutPositions;
            }
        }

        return null;
    }

    private sealed record Sealed(SortedDictionary<int, (long Low, long High)> Ranges, Dictionary<int, long> CutPositions, long[] EmittedThrough);
}

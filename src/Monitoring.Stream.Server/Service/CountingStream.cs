namespace Monitoring.Stream.Server.Service;

/// <summary>A read-only stream that counts the bytes read through it.</summary>
internal sealed class CountingStream(System.IO.Stream inner) : System.IO.Stream
{
    private readonly byte[] _tail = new byte[8];

    /// <summary>Bytes read so far.</summary>
    public long Count { get; private set; }

    /// <summary>The last eight bytes read (fewer while <see cref="Count"/> is below 8), oldest first: a gzip body's trailer.</summary>
    public ReadOnlySpan<byte> Tail => _tail.AsSpan(0, (int)Math.Min(Count, 8));

    private void Keep(ReadOnlySpan<byte> read)
    {
        if (read.Length >= 8)
        {
            read[^8..].CopyTo(_tail);
            return;
        }

        // Shift the kept bytes left and append: the buffer always ends with the newest byte.
        int kept = (int)Math.Min(Count, 8);
        int shift = Math.Max(0, kept + read.Length - 8);
        _tail.AsSpan(shift, kept - shift).CopyTo(_tail);
        read.CopyTo(_tail.AsSpan(kept - shift));
    }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => Count; set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count)
    {
        int read = inner.Read(buffer, offset, count);
        Keep(buffer.AsSpan(offset, read));
        Count += read;
        return read;
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        int read = await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        Keep(buffer.Span[..read]);
        Count += read;
        return read;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

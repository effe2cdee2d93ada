namespace Monitoring.Stream.Kafka.WireFormat;

/// <summary>What decoding one message did: its error (whole message refused) or how many points it wrote and refused.</summary>
/// <param name="Error">Why the whole message was refused, or <see cref="PointDecodeError.None"/>.</param>
/// <param name="Points">Points the message held (0 when refused as a whole).</param>
/// <param name="Refused">Points of a good message the writer refused (counted there by reason and source).</param>
/// <param name="Offset">Byte offset at which decoding failed, or -1.</param>
public readonly record struct PointDecodeResult(PointDecodeError Error, int Points, int Refused, long Offset)
{
    /// <summary>True when the message decoded and its points were offered to the writer.</summary>
    public bool Succeeded => Error == PointDecodeError.None;

    /// <summary>A short text for a dead-letter header: the error and the byte offset.</summary>
    public string Describe() => Offset >= 0 ? $"{Error} at byte {Offset}" : Error.ToString();
}

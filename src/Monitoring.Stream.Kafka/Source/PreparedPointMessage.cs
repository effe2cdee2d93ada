using Monitoring.Stream.Kafka.WireFormat;

namespace Monitoring.Stream.Kafka.Source;

/// <summary>
/// A point message as the consumer hands it over: checked and its series resolved by <see cref="PointMessageDeserializer"/>,
/// its points waiting in the decoder; the raw bytes are kept only when the message failed (for the dead-letter topic).
/// </summary>
/// <param name="Result">The decoder's verdict (points, or the error that refused the message).</param>
/// <param name="Length">The message's length in bytes.</param>
/// <param name="Raw">A copy of the message when it failed to decode, else null.</param>
internal readonly record struct PreparedPointMessage(PointDecodeResult Result, int Length, byte[]? Raw);

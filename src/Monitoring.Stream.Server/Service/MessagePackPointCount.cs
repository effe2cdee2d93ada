using MessagePack;

namespace Monitoring.Stream.Server.Service;

/// <summary>
/// Reads how many points a MessagePack point batch (docs/wire-format.md) announces, without decoding it: the
/// header of its fifth element. The decoder checks the batch whole afterwards; this only sizes the request.
/// </summary>
internal static class MessagePackPointCount
{
    /// <summary>The points the batch announces, or null when its layout is not the wire format's (the decoder then says why).</summary>
    public static int? Read(ReadOnlyMemory<byte> body)
    {
        var reader = new MessagePackReader(body);
        try
        {
            if (reader.NextMessagePackType != MessagePackType.Array || reader.ReadArrayHeader() < 5)
            {
                return null;
            }

            // version and base timestamp: integers.
            for (int i = 0; i < 2; i++)
            {
                if (reader.NextMessagePackType != MessagePackType.Integer)
                {
                    return null;
                }

                reader.Skip();
            }

            // strings: an array of strings (skipped one by one: a string has no nesting).
            if (reader.NextMessagePackType != MessagePackType.Array)
            {
                return null;
            }

            int strings = reader.ReadArrayHeader();
            for (int i = 0; i < strings; i++)
            {
                if (reader.NextMessagePackType != MessagePackType.String)
                {
                    return null;
                }

                reader.Skip();
            }

            // series: an array of arrays of integers.
            if (reader.NextMessagePackType != MessagePackType.Array)
            {
                return null;
            }

            int series = reader.ReadArrayHeader();
            for (int i = 0; i < series; i++)
            {
                if (reader.NextMessagePackType != MessagePackType.Array)
                {
                    return null;
                }

                int length = reader.ReadArrayHeader();
                for (int j = 0; j < length; j++)
                {
                    if (reader.NextMessagePackType != MessagePackType.Integer)
                    {
                        return null;
                    }

                    reader.Skip();
                }
            }

            return reader.NextMessagePackType == MessagePackType.Array ? reader.ReadArrayHeader() / 3 : null;
        }
        catch (Exception e) when (e is EndOfStreamException or MessagePackSerializationException or OverflowException)
        {
            return null;
        }
    }
}

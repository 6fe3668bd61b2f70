"""Block Kit checks shared by the Slack fakes: fake_receivers.py (incoming
webhooks) and fake_slack.py (chat.postMessage) accept and refuse the same
blocks, as Slack's own validation is one (standard library only; imported
from the fakes' directory, which is on sys.path when they run as scripts)."""


RICH_TEXT_PARTS = {'rich_text_section', 'rich_text_list', 'rich_text_preformatted',
                   'rich_text_quote'}
RICH_TEXT_REQUIRED = {'text': 'text', 'link': 'url', 'emoji': 'name', 'user': 'user_id',
                      'channel': 'channel_id', 'usergroup': 'usergroup_id',
                      'broadcast': 'range'}


def slack_blocks_ok(blocks):
    """Block Kit's documented rules for what a webhook accepts (doc/slack.md):
    at most 50 blocks; a text object's text is 1..3000 characters; a rich_text
    block has a non-empty list of sections, lists, preformatted or quote parts,
    each with its elements, and every element its required field. Slack answers
    anything else with 400 invalid_blocks."""
    if blocks is None:
        return True
    if not isinstance(blocks, list) or len(blocks) > 50:
        return False
    for block in blocks:
        if not isinstance(block, dict) or not isinstance(block.get('type'), str):
            return False
        texts = [block['text']] if 'text' in block else []
        texts += block.get('fields') or []
        for obj in texts:
            if (not isinstance(obj, dict) or obj.get('type') not in ('mrkdwn', 'plain_text')
                    or not isinstance(obj.get('text'), str)
                    or not 1 <= len(obj['text']) <= 3000):
                return False
        if block['type'] == 'rich_text':
            parts = block.get('elements')
            if not isinstance(parts, list) or not parts:
                return False
            for part in parts:
                if (not isinstance(part, dict) or part.get('type') not in RICH_TEXT_PARTS
                        or not isinstance(part.get('elements'), list)):
                    return False
                items = part['elements']
                if part['type'] == 'rich_text_list':  # a list holds sections
                    items = [el for sec in items if isinstance(sec, dict)
                             for el in sec.get('elements') or []]
                for el in items:
                    need = RICH_TEXT_REQUIRED.get(el.get('type')) if isinstance(el, dict) \
                        else None
                    if not need or not isinstance(el.get(need), str):
                        return False
    return True

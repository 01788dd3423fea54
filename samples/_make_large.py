#!/usr/bin/env python3
"""Regenerate samples/good_large_200_members.834 (+ .expect.json) deterministically.

Usage:  python samples/_make_large.py
A single FFM-style (VA0FFM) 834 with exactly 200 members in household groups,
REF*0F/REF*17 ids, 2300 REF*CE/REF*1L, balanced 2700/2750 reporting categories
and correct QTY totals.  Everything is fictitious: SSNs use the never-issued
9xx area, phone numbers the 555-01xx block, e-mail example.com.
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = 'good_large_200_members'
N_MEMBERS = 200
BEGIN, END = '20260201', '20261231'

LAST = ['ABERCROMBIE', 'BALOGUN', 'CASTELLANOS', 'DRUMMOND', 'EKWUEME', 'FONTAINE', 'GALLAGHER', 'HOSSAIN',
        'IBARRA', 'JANKOWSKI', 'KAPOOR', 'LOMBARDI', 'MCALLISTER', 'NAKAMURA', 'OSEI', 'PETROVIC', 'QUILLEN',
        'RADCLIFFE', 'SANDOVAL', 'THORNBURY', 'UDOKA', 'VASQUEZ', 'WHITFIELD', 'YAMAGUCHI', 'ZELENKA',
        'ASHWORTH', 'BRANNIGAN', 'CHIKWANHA', 'DESROSIERS', 'ELLINGSON', 'FERREIRA', 'GOLDBERG', 'HALVORSEN',
        'IWU', 'JARDINE', 'KOVACS', 'LINDSTROM', 'MONTGOMERY', 'NDIAYE', 'OKONKWO', 'PEMBERTON', 'RAHMAN',
        'SOKOLOV', 'TRUJILLO', 'VILLANUEVA', 'WOJCIK', 'ACHEAMPONG', 'BERGSTROM', 'CORCORAN', 'DUONG']
FIRST_F = ['ADAEZE', 'BRIDGET', 'CAROLINA', 'DELPHINE', 'EMILIA', 'FARIDA', 'GWENDOLYN', 'HARUKA', 'INGRID',
           'JOSEFINA', 'KEZIAH', 'LUCIA', 'MAEVE', 'NADIA', 'ODETTE', 'PRIYANKA', 'ROSALIE', 'SOLVEIG',
           'TAMSIN', 'URSULA', 'VALENTINA', 'WINIFRED', 'YESENIA', 'ZAINAB']
FIRST_M = ['AUGUSTIN', 'BARNABY', 'CORMAC', 'DIMITRI', 'EZEKIEL', 'FELIPE', 'GIDEON', 'HAMZA', 'IGNATIUS',
           'JOAQUIN', 'KOFI', 'LORCAN', 'MATTHIAS', 'NNAMDI', 'OSWALD', 'PERCIVAL', 'RUFUS', 'SEBASTIAN',
           'TOBIAH', 'ULRICH', 'VIKRAM', 'WENDELL', 'YUSUF', 'ZEBEDEE']
MIDDLE = list('ABCDEFGHJKLMNPRSTVW') + ['']
STREETS = ['OAK HOLLOW LN', 'JEFFERSON DAVIS HWY', 'BROAD ST', 'MONUMENT AVE', 'COLLEY AVE', 'GRANBY ST',
           'WILLIAMSON RD', 'MAIN ST', 'KING ST', 'DUKE ST', 'PRINCESS ANNE RD', 'HULL STREET RD',
           'LEE HWY', 'CHAIN BRIDGE RD', 'RIVER RD', 'MILLWOOD AVE', 'GREENBRIER PKWY', 'WARWICK BLVD']
CITIES = [('RICHMOND', '23220', '51760', 'R-VA009'), ('NORFOLK', '23508', '51710', 'R-VA010'),
          ('ROANOKE', '24015', '51770', 'R-VA005'), ('ARLINGTON', '22203', '51013', 'R-VA010'),
          ('ALEXANDRIA', '22314', '51510', 'R-VA010'), ('CHARLOTTESVILLE', '22902', '51540', 'R-VA007'),
          ('LYNCHBURG', '24501', '51680', 'R-VA006'), ('HARRISONBURG', '22801', '51660', 'R-VA004'),
          ('NEWPORT NEWS', '23601', '51700', 'R-VA011'), ('WINCHESTER', '22601', '51840', 'R-VA003')]
AREA_PHONE = {'RICHMOND': '804', 'NORFOLK': '757', 'ROANOKE': '540', 'ARLINGTON': '703', 'ALEXANDRIA': '703',
              'CHARLOTTESVILLE': '434', 'LYNCHBURG': '434', 'HARRISONBURG': '540', 'NEWPORT NEWS': '757',
              'WINCHESTER': '540'}
PLANS = ['48213VA004000701', '48213VA004000702', '48213VA005000301', '48213VA006000101']


def main():
    rnd = random.Random(834200)
    used_ssn = set()

    def ssn():
        while True:
            s = '9%02d%02d%04d' % (rnd.randint(0, 99), rnd.randint(10, 69), rnd.randint(1, 9999))
            if s not in used_ssn and len(set(s)) >= 5:
                used_ssn.add(s)
                return s

    def dob(lo, hi):
        y = rnd.randint(lo, hi)
        return '%04d%02d%02d' % (y, rnd.randint(1, 12), rnd.randint(1, 28))

    def prem(birth):
        age = 2026 - int(birth[:4])
        return round(180 + age * 9.35 + rnd.randint(0, 4000) / 100, 2)

    body = []
    n_members = n_deps = n_subs = 0
    hh = 0
    while n_members < N_MEMBERS:
        hh += 1
        size = min(rnd.choice([1, 1, 2, 2, 3, 4]), N_MEMBERS - n_members)
        last = rnd.choice(LAST)
        city, zipc, county, area = rnd.choice(CITIES)
        sub_id = '%010d' % (4800000 + hh * 17)
        policy = '%08d' % (22000000 + hh * 29)
        plan = rnd.choice(PLANS)
        sub_sex = rnd.choice('FM')
        people = [('18', sub_sex, dob(1958, 2000))]
        if size >= 2:
            people.append(('01', 'M' if sub_sex == 'F' else 'F', dob(1958, 2000)))
        while len(people) < size:
            people.append(('19', rnd.choice('FM'), dob(2008, 2025)))
        prems = [prem(p[2]) for p in people]
        tot = round(sum(prems), 2)
        aptc = float(min(tot, rnd.choice([0, 150, 275, 420, 610, 880])))
        married = size >= 2
        for k, (rel, sex, birth) in enumerate(people):
            first = rnd.choice(FIRST_F if sex == 'F' else FIRST_M)
            sub = k == 0
            mid = rnd.choice(MIDDLE)
            member_id = '%010d' % (int(sub_id) + k)
            body.append(['INS', 'Y' if sub else 'N', rel, '021', 'EC', 'A'] + (['', '', 'AC'] if sub else []))
            body.append(['REF', '0F', sub_id])
            body.append(['REF', '17', member_id])
            body.append(['DTP', '356', 'D8', BEGIN])
            body.append(['NM1', 'IL', '1', last, first, mid, '', '', '34', ssn()])
            if sub:
                phone = AREA_PHONE[city] + '5550' + '%03d' % rnd.randint(100, 199)
                body.append(['PER', 'IP', '', 'HP', phone, 'EM', '%s.%s@example.com' % (first.lower(), last.lower())])
                body.append(['N3', '%d %s' % (rnd.randint(100, 9899), rnd.choice(STREETS))])
                body.append(['N4', city, 'VA', zipc, '', 'CY', county])
            marital = ('M' if married else rnd.choice('SD')) if rel in ('18', '01') else 'S'
            body.append(['DMG', 'D8', birth, sex, marital])
            if sub:
                body.append(['LUI', 'LE', 'ENG', '', '7'])
            body.append(['HD', '021', '', 'HLT', '', 'FAM' if size > 1 else 'IND'])
            body.append(['DTP', '348', 'D8', BEGIN])
            body.append(['DTP', '349', 'D8', END])
            body.append(['REF', 'CE', plan])
            body.append(['REF', '1L', policy])
            items = [('PRE AMT 1', '9X', '%.2f' % prems[k])]
            if sub:
                items = ([('APTC AMT', '9V', '%.2f' % aptc)] + items +
                         [('PRE AMT TOT', '9X', '%.2f' % tot), ('TOT RES AMT', '9V', '%.2f' % (tot - aptc)),
                          ('RATING AREA', '9X', area)])
            body.append(['LS', '2700'])
            for j, (n, q, v) in enumerate(items, 1):
                body += [['LX', str(j)], ['N1', '75', n], ['REF', q, v], ['DTP', '007', 'RD8', BEGIN + '-' + END]]
            body.append(['LE', '2700'])
            n_members += 1
            n_subs += sub
            n_deps += not sub

    head = [['ST', '834', '0001', '005010X220A1'],
            ['BGN', '00', 'VA0-20260115-044001', '20260115', '021500', 'ET', '', '', '2'],
            ['DTP', '007', 'D8', '20260201'],
            ['QTY', 'TO', str(n_members)], ['QTY', 'DT', str(n_deps)], ['QTY', 'ET', str(n_subs)],
            ['N1', 'P5', 'FEDERALLY FACILITATED EXCHANGE', 'FI', '521874306'],
            ['N1', 'IN', 'BLUE RIDGE MUTUAL HEALTH PLAN', 'FI', '540962817']]
    st = head + body
    st.append(['SE', str(len(st) + 1), '0001'])
    isa = ['ISA', '00', ' ' * 10, '00', ' ' * 10, 'ZZ', 'VA0FFM'.ljust(15), 'ZZ', 'EDI834GATEWAY'.ljust(15),
           '260115', '0215', '^', '00501', '000044001', '1', 'P', ':']
    segs = ([isa, ['GS', 'BE', 'VA0', 'EDI834GATEWAY', '20260115', '021500', '44001', 'X', '005010X220A1']]
            + st + [['GE', '1', '44001'], ['IEA', '1', '000044001']])

    def render(seg):
        els = list(seg)
        if seg[0] != 'ISA':
            while els and els[-1] == '':
                els.pop()
        return '*'.join(els) + '~'

    data = ''.join(render(s) for s in segs)
    assert len(render(isa)) == 106
    with open(os.path.join(HERE, NAME + '.834'), 'wb') as f:
        f.write(data.encode('ascii'))
    expect = {
        'description': ('Large FFM file (VA0FFM): one 834 with %d members in %d households (%d subscribers, %d '
                        'dependents), %d segments, every member with 2300 REF*CE/REF*1L and balanced 2700/2750 '
                        'reporting categories and matching QTY TO/DT/ET, generated by samples/_make_large.py.'
                        % (n_members, hh, n_subs, n_deps, len(st))),
        'verdict': 'accepted',
        'codes': [],
    }
    with open(os.path.join(HERE, NAME + '.expect.json'), 'w', encoding='utf-8') as f:
        f.write(json.dumps(expect, indent=2) + '\n')
    print('%s: %d members, %d segments in set, %d bytes' % (NAME, n_members, len(st), len(data)))


if __name__ == '__main__':
    main()
